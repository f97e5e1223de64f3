"""``medpeft eval``, ``predict`` and ``export``: what a finished run does after training —
re-scored (optionally on other data), run on image files, written as a plain timm model."""
from __future__ import annotations

import argparse

from . import common


def cmd_eval(args: argparse.Namespace) -> int:
    from ..inference import evaluate_run
    from ..studies.listings import metrics_table

    metrics = evaluate_run(args.run, data_spec=args.data, data_root=args.data_root, split=args.split,
                           n_bootstrap=args.n_bootstrap)
    metrics_table(metrics, title=f"{args.run} on {args.data or 'its own data'} ({args.split})").print(
        common.console, args.format)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..inference import PredictConfig, predict_files
    from ..serialization import from_dict
    from ..table import Table
    from .flags import given_values

    console = common.console
    config = from_dict(PredictConfig, given_values(args).get("predict", {}), where="predict")
    summary = predict_files(args.run, args.inputs, args.out, config, console=console,
                            progress=not args.no_progress)
    console.print(f"{summary.rows} image(s) predicted -> {summary.out}"
                  + (f"; heatmaps in {summary.heatmaps}" if summary.heatmaps else ""))
    if summary.skipped:
        table = Table(title=f"skipped {len(summary.skipped)} file(s)", columns=["file", "reason"])
        for name, reason in summary.skipped:
            table.add_row(name, reason)
        table.print(console)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..inference import export_run

    result = export_run(args.run, args.out)
    common.console.print(f"{result.path}: {result.note} (largest output difference to the adapted model on a "
                         f"probe batch: {result.max_abs_diff:.2g})")
    return 0


def add_commands(commands) -> None:
    from ..inference.predict import PredictConfig
    from .flags import HelpFormatter, add_dataclass_flags

    evaluate = commands.add_parser("eval", help="score a finished run (optionally on other data)")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--data", help="dataset spec to score on (default: the run's own); it must "
                                         "have the run's labels in the same order")
    evaluate.add_argument("--data-root", help="data folder for --data")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--n-bootstrap", type=common.bootstrap_count, default=1000,
                          help=f"resamples for the AUROC CI (0 = none, else at least {common.MIN_BOOTSTRAP})")
    common.format_flag(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    predict = commands.add_parser("predict", help="predict on PNG/JPEG/DICOM files or folders with a finished run",
                                  formatter_class=HelpFormatter)
    predict.add_argument("run", help="run directory")
    predict.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER",
                         help="image files, or folders searched recursively")
    predict.add_argument("--out", default="predictions.csv",
                         help="CSV with one row per image: probabilities, decisions at the run's validation "
                              "thresholds, prediction")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dataclass_flags(predict, PredictConfig, "predict")
    predict.set_defaults(func=cmd_predict)


def add_export_command(commands) -> None:
    """``export`` comes after ``serve`` in ``medpeft --help``, as it always has."""
    export = commands.add_parser("export", help="write a finished run as a timm model for inference "
                                                "(safetensors + config.json), merged where its method merges")
    export.add_argument("run", help="run directory")
    export.add_argument("--out", help="export folder (default: <run>/export)")
    export.set_defaults(func=cmd_export)
