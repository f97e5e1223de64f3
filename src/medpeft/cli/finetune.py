"""``medpeft finetune``: a backbone fine-tuned with a PEFT method, from flags to a run directory."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import common


def finetune_flags(parser: argparse.ArgumentParser) -> None:
    from ..methods import methods_for
    from ..models import CLASSIFIER_FAMILIES, BackboneConfig
    from ..runtime import DataConfig, TrainConfig
    from .flags import add_dataclass_flags, add_method_flags

    common.run_options(parser, config="a run's config.yaml",
                       out="run directory; if not given: runs/<data>-<backbone>-<method>-f<fraction>-s<seed>")
    parser.add_argument("--nproc", type=common.positive_int, default=1,
                        help="data-parallel processes (DistributedDataParallel: gloo on CPU, at most one per usable "
                             "core; NCCL on GPUs); --batch-size is their total")
    parser.add_argument("--method", dest="run.method", type=common.method_name_for(*CLASSIFIER_FAMILIES),
                        default=argparse.SUPPRESS, metavar="METHOD",
                        help=f"PEFT method (default lora): {', '.join(methods_for(*CLASSIFIER_FAMILIES))}")
    add_dataclass_flags(parser, DataConfig, "data", rename={"spec": "data"})
    add_dataclass_flags(parser, BackboneConfig, "backbone", rename={"name": "backbone"})
    add_dataclass_flags(parser, TrainConfig, "train")
    add_method_flags(parser, CLASSIFIER_FAMILIES)


def run_config_from_args(args: argparse.Namespace):
    """Defaults, then --config YAML, then the flags typed on the command line; a new run's
    ``n_bootstrap`` is 0 or at least 100 (saved runs with fewer still load)."""
    from ..runtime import RunConfig
    from .flags import config_from_args

    config = config_from_args(args, RunConfig)
    common.check_n_bootstrap(config.train.n_bootstrap, "n_bootstrap")
    return config


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_nproc(nproc: int, device: str) -> None:
    """On CPU, ``--nproc`` above the usable cores is refused: the processes would only take turns."""
    from ..runtime import resolve_device

    if nproc > 1 and resolve_device(device).type == "cpu" and nproc > usable_cores():
        raise ValueError(f"--nproc {nproc} is more than the {usable_cores()} CPU core(s) this process may use; "
                         f"data-parallel processes on CPU need a core each (use --nproc {usable_cores()} or fewer)")


def default_run_dir(config) -> Path:
    from ..runtime import run_slug

    return Path("runs") / run_slug(config.data.spec, config.backbone.name or "vit_small", config.method,
                                   f"f{config.data.fraction:g}", f"s{config.train.seed}")


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..train import finetune, finetune_parallel

    console = common.console
    config = run_config_from_args(args)
    check_nproc(args.nproc, config.train.device)
    out = Path(args.out) if args.out else default_run_dir(config)
    console.print(f"run directory: {out}")
    if args.nproc == 1:
        finetune(config, out, resume=args.resume, console=console, progress=not args.no_progress)
    else:
        finetune_parallel(config, out, args.nproc, resume=args.resume, console=console,
                          progress=not args.no_progress)
    return 0


def add_commands(commands) -> None:
    from .flags import HelpFormatter

    finetune = commands.add_parser("finetune", help="fine-tune a backbone with a PEFT method",
                                   formatter_class=HelpFormatter)
    finetune_flags(finetune)
    finetune.set_defaults(func=cmd_finetune)
