"""Command-line flags generated from config dataclasses, so a new field is a new flag for free.

Flags default to "not given" (``argparse.SUPPRESS``): a run's config is the dataclass defaults,
then the ``--config`` YAML, then the flags actually typed — in that order of precedence.
A float flag takes only finite numbers (``nan``, ``inf`` are refused by the parser), a mapping
flag (``--timm-kwargs``) refuses a key given twice.
Method options are one flag per option name (``--rank`` serves every method that has a rank);
``--help`` then lists each method's own options, help and defaults in a section of its own.
:func:`config_from_args` assembles every command's config from them the same way.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

import yaml

from ..serialization import field_help, load_yaml, merge, parse_yaml
from .common import finite_float


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and section descriptions printed with their own line breaks."""


def _base_type(hint):
    """``int | None`` -> int; ``tuple[float, ...]`` -> (float, True); dict -> dict."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def _parse_mapping(text: str) -> dict:
    try:
        value = parse_yaml(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not a YAML mapping like '{{depth: 4}}': {text!r} ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{depth: 4}}', got {text!r}")
    return value


_TYPES = {float: finite_float}  # parser types of field types; others are the type itself


def _add_flag(parser, flag: str, dest: str, hint, help_text: str | None) -> None:
    kind, many = _base_type(hint)
    kind_type = _TYPES.get(kind, kind)
    common = dict(dest=dest, default=argparse.SUPPRESS, help=help_text.replace("%", "%%") if help_text else None)
    if kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif kind is dict:
        parser.add_argument(flag, type=_parse_mapping, metavar="MAPPING", **common)
    elif many:
        parser.add_argument(flag, type=kind_type, nargs="+", **common)
    else:
        parser.add_argument(flag, type=kind_type, **common)


def add_dataclass_flags(parser, cls, section: str, rename: dict[str, str] | None = None,
                        skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per field of ``cls``; parsed values land in ``dest = "section.field"``."""
    hints = typing.get_type_hints(cls)
    rename = rename or {}
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        flag = "--" + rename.get(field.name, field.name).replace("_", "-")
        _add_flag(parser, flag, f"{section}.{field.name}", hints[field.name], field_help(cls, field.name) or None)


def add_method_flags(parser: argparse.ArgumentParser, families: tuple[str, ...],
                     section: str = "method_options") -> None:
    """One flag per option name of the methods that fit ``families``, then one help section per
    method with its own options (defaults: the first family's, e.g. LoRA's on the UNet)."""
    from ..methods import METHODS, methods_for

    methods = {name: METHODS.get(name) for name in methods_for(*families)}
    own = {name: cls.family_defaults.get(families[0], {}) for name, cls in methods.items()}
    users: dict[str, list[str]] = {}
    hints: dict[str, object] = {}
    for name, cls in methods.items():
        config_hints = typing.get_type_hints(cls.config_class)
        for field in dataclasses.fields(cls.config_class):
            users.setdefault(field.name, []).append(name)
            hints.setdefault(field.name, config_hints[field.name])
    group = parser.add_argument_group(
        "method options", "Each flag sets the option of that name of the chosen --method (an option the "
                          "method does not have is an error). Each method's own options, help and defaults "
                          "are listed in its section below, and by `medpeft methods NAME`.")
    for option, names in users.items():
        _add_flag(group, "--" + option.replace("_", "-"), f"{section}.{option}", hints[option],
                  f"option of {', '.join(names)}")
    for name, cls in methods.items():
        lines = []
        for field in dataclasses.fields(cls.config_class):
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            default = own[name].get(field.name, default)
            lines.append(f"  --{field.name.replace('_', '-'):<18} {field_help(cls.config_class, field.name)} "
                         f"(default {default})")
        parser.add_argument_group(f"--method {name}: {cls.summary_for(families[0])}",
                                  "\n".join(lines) or "  no options of its own")


def given_values(args: argparse.Namespace) -> dict[str, dict]:
    """``{"train": {"epochs": 3}, ...}`` from the flags that were typed."""
    sections: dict[str, dict] = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, name = dest.split(".", 1)
            sections.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
    return sections


def config_from_args(args: argparse.Namespace, config_class, *, prepare=None):
    """The one way a command's config is assembled: the dataclass defaults, then the ``--config``
    YAML, then the flags typed on the command line.

    Flags in the ``run`` and ``top`` sections set top-level keys (``--method``, ``--base``,
    ``--objective``). For a config with ``method_options``, a ``--method`` other than the
    recipe's drops the recipe's options (they belong to its own method), and the typed option
    flags are merged over what remains. ``prepare`` edits the values before the config is built
    (a diffusion adaptation takes its base's UNet).
    """
    values = load_yaml(args.config) if args.config else {}
    given = given_values(args)
    top = {**given.pop("run", {}), **given.pop("top", {})}
    options = given.pop("method_options", {})
    values = merge(values, given)
    if "method" in top and top["method"] != values.get("method"):
        values["method_options"] = {}  # a recipe's options belong to its own method
    values.update(top)
    if any(field.name == "method_options" for field in dataclasses.fields(config_class)):
        current = values.get("method_options") or {}
        if not isinstance(current, dict):
            raise ValueError(f"{args.config}: method_options must be a mapping such as {{rank: 8}}")
        values["method_options"] = merge(current, options)
    return config_class.from_dict(prepare(values) if prepare else values)
