"""Command-line flags generated from config dataclasses, so a new field is a new flag for free.

Flags default to "not given" (``argparse.SUPPRESS``): a run's config is the dataclass defaults,
then the ``--config`` YAML, then the flags actually typed — in that order of precedence.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

import yaml


def _base_type(hint):
    """``int | None`` -> int; ``tuple[float, ...]`` -> (float, True); dict -> dict."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    return hint, False


def _parse_mapping(text: str) -> dict:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping like '{{depth: 4}}', got {text!r}")
    return value


def _comment_of(cls, name: str) -> str:
    """The trailing ``# comment`` of a field in the class source: its one-line doc."""
    import inspect
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return ""
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(f"{name}:") and "#" in stripped:
            return stripped.split("#", 1)[1].strip()
    return ""


def add_dataclass_flags(parser, cls, section: str, rename: dict[str, str] | None = None,
                        skip: tuple[str, ...] = (), seen: set[str] | None = None) -> None:
    """One ``--flag`` per field of ``cls``; parsed values land in ``dest = "section.field"``."""
    hints = typing.get_type_hints(cls)
    rename = rename or {}
    for field in dataclasses.fields(cls):
        if field.name in skip or not field.init:
            continue
        flag = "--" + rename.get(field.name, field.name).replace("_", "-")
        if seen is not None:
            if flag in seen:
                continue
            seen.add(flag)
        kind, many = _base_type(hints[field.name])
        help_text = _comment_of(cls, field.name).replace("%", "%%") or None  # argparse %-formats help
        dest = f"{section}.{field.name}"
        common = dict(dest=dest, default=argparse.SUPPRESS, help=help_text)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif kind is dict:
            parser.add_argument(flag, type=_parse_mapping, metavar="MAPPING", **common)
        elif many:
            parser.add_argument(flag, type=kind, nargs="+", **common)
        else:
            parser.add_argument(flag, type=kind, **common)


def given_values(args: argparse.Namespace) -> dict[str, dict]:
    """``{"train": {"epochs": 3}, ...}`` from the flags that were typed."""
    sections: dict[str, dict] = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, name = dest.split(".", 1)
            sections.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
    return sections


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update (override wins), without mutating either."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
