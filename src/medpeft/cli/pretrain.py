"""``medpeft pretrain``: MAE or SimCLR pretraining on unlabeled training images, optionally
published to the named checkpoint cache."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import common


def pretrain_flags(parser: argparse.ArgumentParser) -> None:
    from ..models import BackboneConfig
    from ..pretrain.config import OBJECTIVES, MAEConfig, PretrainDataConfig, PretrainTrainConfig, SimCLRConfig
    from .flags import add_dataclass_flags

    common.run_options(parser, config="a pretraining run's config.yaml",
                       out="run directory; if not given: runs/pretrain/<name or data-backbone>")
    parser.add_argument("--name", help="also publish the final checkpoint to the named cache "
                                       "(then `medpeft finetune --checkpoint NAME`)")
    parser.add_argument("--data", dest="data.specs", action="extend", nargs="+", default=argparse.SUPPRESS,
                        metavar="SPEC", help="dataset spec whose training images are used (labels ignored); repeat to pool")
    parser.add_argument("--save-at", dest="train.save_at", type=common.int_list, default=argparse.SUPPRESS,
                        metavar="EPOCHS", help="also save checkpoint-<epoch>.pth after these epochs, e.g. 10,20")
    add_dataclass_flags(parser, PretrainDataConfig, "data", skip=("specs",))
    add_dataclass_flags(parser, BackboneConfig, "backbone", rename={"name": "backbone"}, skip=("checkpoint",))
    parser.add_argument("--objective", dest="top.objective", choices=OBJECTIVES, default=argparse.SUPPRESS,
                        help="mae: masked autoencoder (ViTs, the default) | simclr: contrastive (any backbone, e.g. "
                             "a ResNet for the CNN methods)")
    add_dataclass_flags(parser, MAEConfig, "mae")
    add_dataclass_flags(parser, SimCLRConfig, "simclr")
    add_dataclass_flags(parser, PretrainTrainConfig, "train", skip=("save_at",))


def pretrain_config_from_args(args: argparse.Namespace):
    """Defaults, then --config YAML, then the flags typed on the command line."""
    from ..pretrain import PretrainConfig
    from .flags import config_from_args

    return config_from_args(args, PretrainConfig)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..models.cache import checkpoint_dir
    from ..pretrain import pretrain
    from ..runtime import run_slug

    console = common.console
    if args.name is not None:
        checkpoint_dir(args.name)  # a bad name fails before anything runs
    config = pretrain_config_from_args(args)
    backbone = config.backbone.name or "vit_small"
    out = Path(args.out) if args.out else Path("runs/pretrain") / (args.name or run_slug(config.data.specs[0], backbone))
    console.print(f"run directory: {out}")
    pretrain(config, out, resume=args.resume, name=args.name, console=console,
             progress=not args.no_progress)
    return 0


def add_commands(commands) -> None:
    from .flags import HelpFormatter

    pretrain = commands.add_parser("pretrain", help="MAE-pretrain a ViT on unlabeled training images",
                                   formatter_class=HelpFormatter)
    pretrain_flags(pretrain)
    pretrain.set_defaults(func=cmd_pretrain)
