"""What the command groups share: the console they print to, argument types (whole numbers,
epoch and per-level lists, PEFT method names), the ``--format`` flag, and the options every
training command has (``--config``, ``--out``, ``--resume``, ``--no-progress``).

Commands print through ``common.console`` looked up at call time, so a test can swap it.
"""
from __future__ import annotations

import argparse

from ..console import make_console

console = make_console()
FORMAT_HELP = "output: table (terminal), md, csv or json"


def format_flag(parser: argparse.ArgumentParser) -> None:
    from ..table import FORMATS

    parser.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)


def run_options(parser: argparse.ArgumentParser, *, config: str, out: str) -> None:
    """``--config``, ``--out``, ``--resume``, ``--no-progress`` of a training command (finetune,
    pretrain, diffusion pretrain/finetune); ``config`` and ``out`` complete their help."""
    parser.add_argument("--config", help=f"YAML recipe (e.g. {config}); flags override it")
    parser.add_argument("--out", help=out)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {value}")
    return value


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 10,20 — got {text!r}") from None


def bool_list(text: str) -> list[bool]:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        return [words[w.lower()] for w in text.replace(",", " ").split()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true/false per UNet level, e.g. false,false,true — got {text!r}") from None


def method_name(text: str) -> str:
    """A name of the PEFT registry ``METHODS`` (``medpeft methods NAME``)."""
    from ..methods import METHODS

    if text not in METHODS:
        raise argparse.ArgumentTypeError(METHODS.unknown_message(text))
    return text


def method_name_for(*families: str):
    """An argument type: a method that fits one of ``families`` (``--method`` of finetune: vit or
    resnet; of diffusion finetune: unet)."""
    def method_for(text: str) -> str:
        from ..methods import METHODS
        from ..methods._base import check_family_fits

        name = method_name(text)
        try:
            check_family_fits(METHODS.get(name), *families)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return name

    return method_for
