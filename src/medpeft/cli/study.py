"""``medpeft study run|worker|status|report``: comparative studies, classifier and diffusion
alike; the study file says which kind it is (``studies/runner.py`` ``kind_of``)."""
from __future__ import annotations

import argparse
import os
import shlex

from . import common


def cmd_study_run(args: argparse.Namespace) -> int:
    from ..studies.runner import run_study

    code = run_study(args.study, workers=args.workers, storage=storage_of(args), work_dir=args.dir,
                     threads=args.threads, console=common.console)
    if args.report:
        cmd_study_report(args)
    return code


def cmd_study_worker(args: argparse.Namespace) -> int:
    from ..studies.runner import run_worker

    return run_worker(args.study, storage=storage_of(args), work_dir=args.dir, threads=args.threads,
                      worker_id=args.id, console=common.console)


def cmd_study_report(args: argparse.Namespace) -> int:
    from ..studies.runner import report_study

    also = getattr(args, "also", None) or []
    command = args.command_line if args.study_command == "run" else " && ".join(
        [f"medpeft study run {shlex.quote(str(study))}" for study in [args.study, *also]] + [args.command_line])
    report_study(args.study, storage=storage_of(args), work_dir=args.dir, out=getattr(args, "out", None),
                 console=common.console, fmt=getattr(args, "format", "table"), command=command, also=also,
                 title=getattr(args, "title", None))
    return 0


def cmd_study_status(args: argparse.Namespace) -> int:
    from ..studies.runner import study_status

    study_status(args.study, storage=storage_of(args), work_dir=args.dir, console=common.console)
    return 0


def storage_of(args: argparse.Namespace) -> str | None:
    """``--storage``, else ``$MEDPEFT_STORAGE`` (a URL with a password stays off command lines,
    where ``ps`` shows it; `study run` hands it to its workers this way), else None (SQLite)."""
    from ..studies.supervise import STORAGE_ENV

    return args.storage or os.environ.get(STORAGE_ENV) or None


def study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="study file (experiments/<study>/study.yaml) or its folder; its `kind:` "
                                      "(classifier or diffusion) says what its cells are")
    parser.add_argument("--storage", help="database URL shared by all workers, e.g. postgresql://user:pw@host/db "
                                          "(default: $MEDPEFT_STORAGE, which keeps a password off the command "
                                          "line; else a SQLite file study.db in the study's folder)")
    parser.add_argument("--dir", help="folder for the storage file, runs and logs (default: the study file's folder)")


def add_commands(commands) -> None:
    study = commands.add_parser("study", help="comparative studies: grids and searches over datasets, "
                                              "fractions, backbones, methods and seeds; diffusion studies "
                                              "(methods x fractions x seeds) too").add_subparsers(
        dest="study_command", required=True)
    run = study.add_parser("run", help="run every missing or failed cell with N local workers (a diffusion "
                                       "study makes its base model and judge first); the same command "
                                       "elsewhere joins a shared --storage")
    study_arguments(run)
    run.add_argument("--workers", type=common.positive_int, default=1,
                     help="local worker processes (default 1); capped, with a warning, to the cores and to the "
                          "memory available at ~600 MiB each")
    run.add_argument("--threads", type=common.positive_int,
                     help="torch threads per worker (default: cores / workers)")
    run.add_argument("--report", action="store_true", help="write the report when the study is done")
    run.set_defaults(func=cmd_study_run)
    worker = study.add_parser("worker", help="one worker in this process (what `study run` starts N of)")
    study_arguments(worker)
    worker.add_argument("--threads", type=common.positive_int, help="torch threads (default: all)")
    worker.add_argument("--id", default="", help="a name for this worker in logs")
    worker.set_defaults(func=cmd_study_worker)
    report = study.add_parser("report", help="tables (md, csv, html) and plots of the finished cells; for a "
                                             "diffusion study the generative table (report.md, results.csv, "
                                             "grids)")
    study_arguments(report)
    report.add_argument("--out", help="folder for the report (default: <study folder>/report)")
    report.add_argument("--with", dest="also", action="append", metavar="STUDY",
                        help="another study (file or folder, its storage in its folder) whose finished cells "
                             "join the same tables, e.g. the other slices of one study; repeatable "
                             "(classifier studies)")
    report.add_argument("--title", help="the report's title (default: the first study's)")
    common.format_flag(report)
    report.set_defaults(func=cmd_study_report)
    status = study.add_parser("status", help="cells done, running, waiting and failed")
    study_arguments(status)
    status.set_defaults(func=cmd_study_status)
