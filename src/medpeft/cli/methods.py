"""``medpeft methods``: the PEFT methods with their trainable parameters on a backbone (a classifier,
or ``--backbone unet``: the diffusion UNet), or one method's options with their help and defaults."""
from __future__ import annotations

import argparse

from . import common


def cmd_methods(args: argparse.Namespace) -> int:
    from ..studies.listings import method_options_table, methods_table

    if args.name:
        family = "unet" if args.backbone == "unet" else None
        method_options_table(args.name, family).print(common.console, args.format)
    else:
        methods_table(args.backbone, img_size=args.img_size, patch_size=args.patch_size,
                      num_outputs=args.num_outputs).print(common.console, args.format)
    return 0


def add_commands(commands) -> None:
    methods = commands.add_parser("methods", help="list PEFT methods with trainable parameters, or one "
                                                  "method's options")
    methods.add_argument("name", nargs="?", type=common.method_name,
                         help="a method: print its options, their help and defaults")
    methods.add_argument("--backbone", default="vit_base", help="short or timm name (default vit_base), or unet: "
                                                                "the diffusion UNet's methods")
    methods.add_argument("--img-size", type=int, default=224)
    methods.add_argument("--patch-size", type=int, default=None)
    methods.add_argument("--num-outputs", type=int, default=14, help="head width (default 14, NIH)")
    common.format_flag(methods)
    methods.set_defaults(func=cmd_methods)
