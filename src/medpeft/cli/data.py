"""``medpeft data info``: sizes, task, labels and positives per split of a dataset spec, and the
duplicates within and across splits (by path and by content, :mod:`medpeft.data.duplicates`)."""
from __future__ import annotations

import argparse

from . import common


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="dataset spec, e.g. synthetic-cxr, medmnist:pneumoniamnist, "
                                     "splits:DIR, folder:DIR, csv:FILE")
    parser.add_argument("--data-root", help="folder with the data files (default: $MEDPEFT_DATA, "
                                            "then the source's default, e.g. ~/.medmnist)")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="fraction of the training labels to keep, in (0, 1] (default 1.0)")
    parser.add_argument("--fraction-seed", type=int, default=0,
                        help="seed of the training subset; fixed by default so seeds vary training only")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out missing/corrupt items with a warning instead of stopping")
    parser.add_argument("--allow-overlap", action="store_true",
                        help="the same image (by path or content) in two splits: a warning, not an error")


def cmd_data_info(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..data.summary import describe, split_table

    splits = load_dataset(args.spec, data_root=args.data_root, fraction=args.fraction,
                          fraction_seed=args.fraction_seed, skip_bad=args.skip_bad,
                          verify=args.verify, allow_overlap=args.allow_overlap)
    if args.format == "table":
        common.console.print(describe(splits))
    split_table(splits, duplicates=True).print(common.console, args.format)
    return 0


def add_commands(commands) -> None:
    data = commands.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command",
                                                                               required=True)
    info = data.add_parser("info", help="sizes, task, labels, positives and duplicates per split")
    add_data_arguments(info)
    info.add_argument("--verify", choices=("none", "exists", "decode"), default="exists",
                      help="check image files: none (labels only), exists (default), or decode every image "
                           "(--skip-bad decodes every image, as training does)")
    common.format_flag(info)
    info.set_defaults(func=cmd_data_info)
