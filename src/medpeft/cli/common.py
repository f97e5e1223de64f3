"""What the command groups share: the console they print to, argument types (whole numbers,
epoch and per-level lists, PEFT method names), the ``--format`` flag, and the options every
training command has (``--config``, ``--out``, ``--resume``, ``--no-progress``).

Commands print through ``common.console`` looked up at call time, so a test can swap it.
"""
from __future__ import annotations

import argparse
import errno
import math
import os

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


_CAUSES = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, where a file is needed",
    errno.EEXIST: "a file of that name exists where a folder is needed",
    errno.ENAMETOOLONG: "the name is too long",
}


def os_error_message(err: OSError) -> str:
    """One line for a failed read or write: the path, then the cause in words (and the system's)."""
    path = err.filename if err.filename is not None else None
    cause = _CAUSES.get(err.errno)
    reason = cause or err.strerror or str(err)
    if err.errno == errno.EEXIST and path is not None and os.path.isfile(path):
        reason = "it is a file, where a folder is needed"
    where = f"{path}" + (f" -> {err.filename2}" if getattr(err, "filename2", None) else "")
    return f"{where}: {reason}" if path is not None else f"a file could not be read or written: {reason}"


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {value}")
    return value


def finite_float(text: str) -> float:
    """A number that is finite: ``nan`` and ``inf`` are refused (every float flag is one)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


MIN_BOOTSTRAP = 100  # fewer resamples cannot place the 2.5th and 97.5th percentiles of a 95% CI


def check_n_bootstrap(value: int, where: str = "--n-bootstrap") -> int:
    """0 (no CI) or at least :data:`MIN_BOOTSTRAP` resamples; a ``ValueError`` naming ``where`` otherwise."""
    if value != 0 and not MIN_BOOTSTRAP <= value:
        raise ValueError(f"{where} must be 0 (no confidence interval) or at least {MIN_BOOTSTRAP}, got {value}: "
                         f"a 95% CI is read from the 2.5th and 97.5th percentiles of the resamples, which "
                         f"{value} resample(s) cannot place (1 gives a zero-width interval)")
    return value


def bootstrap_count(text: str) -> int:
    """``--n-bootstrap``: 0 or at least :data:`MIN_BOOTSTRAP`."""
    try:
        return check_n_bootstrap(non_negative_int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--n-bootstrap ")) from None


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
