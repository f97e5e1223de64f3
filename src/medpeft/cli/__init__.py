"""Command line: each sub-command parses its arguments and calls one library function.

No logic lives here beyond turning flags into typed configs (litgpt's habit); everything a
command does is importable and testable without the CLI. One module per command group
(``data``, ``finetune``, ``pretrain``, ``inference``: eval, predict, export; ``serve``,
``methods``, ``study``, ``diffusion``), each with an ``add_commands``; ``common`` holds what they
share, ``flags`` the flags generated from config dataclasses and ``config_from_args``.
Exit codes: 0 done, 1 training diverged (however it shows: a NaN loss, or NaN scores at the end),
2 bad input (one clear line on stderr, no traceback) — including a file that cannot be read or
written (a folder where a file is wanted, a path through a file, read-only, disk full: the
``OSError`` is named with its path and cause), 130 interrupted.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import warnings

from . import common, data, diffusion, finetune, inference, methods, pretrain, serve, study

__all__ = ["build_parser", "main"]



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medpeft", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data.add_commands(commands)
    finetune.add_commands(commands)
    pretrain.add_commands(commands)
    inference.add_commands(commands)  # eval, predict
    serve.add_commands(commands)
    inference.add_export_command(commands)
    methods.add_commands(commands)
    study.add_commands(commands)
    diffusion.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..console import print_error, show_warnings_plainly
    from ..runtime import TrainingDiverged

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "medpeft " + shlex.join(argv)  # what reports print as "Made by"
    warnings.filterwarnings("default", category=UserWarning)
    show_warnings_plainly()
    diverged = f"{'pre' if args.command == 'pretrain' else ''}training diverged"
    try:
        return args.func(args)
    except TrainingDiverged as err:  # NaN loss, or NaN scores after training: the message says what to change
        print_error(common.console, str(err), diverged)
        return 1
    except (ValueError, FileNotFoundError) as err:  # user errors: one clear line, no traceback
        print_error(common.console, str(err))
        return 2
    except OSError as err:  # a file that cannot be read or written: named, with the cause
        print_error(common.console, common.os_error_message(err))
        return 2
    except KeyboardInterrupt:
        common.console.print("interrupted", style="yellow")
        return 130
