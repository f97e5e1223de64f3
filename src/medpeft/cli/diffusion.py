"""``medpeft diffusion pretrain|finetune|generate``: the text-to-image diffusion model, its PEFT
adaptations and image grids. Its methods are the registry's methods that fit the UNet (``medpeft
methods --backbone unet``); diffusion studies are ``medpeft study`` (``cli/study.py``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import common


def diffusion_flags(parser: argparse.ArgumentParser, adapt: bool) -> None:
    from ..diffusion import (CaptionConfig, DiffusionDataConfig, DiffusionTrainConfig, SampleConfig, ScoreConfig,
                             TextConfig, UNetConfig)
    from ..methods import methods_for
    from .flags import add_dataclass_flags, add_method_flags

    common.run_options(parser, config="a diffusion run's config.yaml",
                       out="run directory (default: runs/diffusion/<data>-<method>-f<fraction>-s<seed>)")
    parser.add_argument("--name", help="also publish the model to the named cache (then --base NAME)")
    parser.add_argument("--data", dest="data.specs", action="extend", nargs="+", default=argparse.SUPPRESS,
                        metavar="SPEC", help="dataset spec whose training images (with captions) are used; repeat to pool")
    if adapt:
        parser.add_argument("--base", dest="run.base", default=argparse.SUPPRESS, required=True,
                            help="the pretrained diffusion model: a run directory or a cached name")
        parser.add_argument("--method", dest="run.method", type=common.method_name_for("unet"),
                            default=argparse.SUPPRESS, metavar="METHOD", required=True,
                            help=f"adaptation method: {', '.join(methods_for('unet'))} (`medpeft methods "
                                 "--backbone unet`)")
        add_method_flags(parser, ("unet",))
    parser.add_argument("--attention", dest="unet.attention", type=common.bool_list, default=argparse.SUPPRESS,
                        help="cross-attention per UNet level, e.g. false,false,true")
    add_dataclass_flags(parser, DiffusionDataConfig, "data", skip=("specs",))
    add_dataclass_flags(parser, CaptionConfig, "captions")
    add_dataclass_flags(parser, TextConfig, "text", rename={"drop": "caption_drop"})
    add_dataclass_flags(parser, UNetConfig, "unet", skip=("attention",))
    add_dataclass_flags(parser, DiffusionTrainConfig, "train")
    add_dataclass_flags(parser, SampleConfig, "sample", rename={"steps": "sample_steps"})
    add_dataclass_flags(parser, ScoreConfig, "score", rename={"images": "score_images", "seed": "score_seed"})


def diffusion_config_from_args(args: argparse.Namespace):
    """Defaults, then --config YAML, then the flags typed; an adaptation inherits its base's UNet."""
    from ..diffusion import DiffusionConfig
    from ..diffusion.training import with_base_defaults
    from .flags import config_from_args

    return config_from_args(args, DiffusionConfig, prepare=with_base_defaults)


def cmd_diffusion_train(args: argparse.Namespace) -> int:
    from ..diffusion import train_diffusion
    from ..runtime import run_slug

    config = diffusion_config_from_args(args)
    out = Path(args.out) if args.out else Path("runs/diffusion") / run_slug(
        config.data.specs[-1], config.method, f"f{config.data.fraction:g}", f"s{config.train.seed}")
    common.console.print(f"run directory: {out}")
    train_diffusion(config, out, resume=args.resume, name=args.name, console=common.console,
                    progress=not args.no_progress)
    return 0


def cmd_diffusion_generate(args: argparse.Namespace) -> int:
    import dataclasses

    from ..diffusion import images_for, load_model
    from ..diffusion.training import read_channels, resolve_model
    from ..diffusion.sample import save_grid

    unet, config, _ = load_model(args.run)
    changes = {k: v for k, v in {"steps": args.steps, "guidance": args.guidance, "sampler": args.sampler}.items()
               if v is not None}
    config = dataclasses.replace(config, sample=dataclasses.replace(config.sample, **changes))
    images = images_for(unet, config, [args.prompt] * args.n, read_channels(resolve_model(args.run)), args.seed)
    path = save_grid(images, args.out, title=args.prompt)
    common.console.print(f"{args.n} images of {args.prompt!r} (seed {args.seed}, {config.sample.sampler} "
                         f"{config.sample.steps} steps, guidance {config.sample.guidance:g}): {path}")
    return 0


def add_commands(commands) -> None:
    from .flags import HelpFormatter

    diffusion = commands.add_parser("diffusion", help="text-to-image diffusion: pretrain, adapt with PEFT, "
                                                      "generate, score").add_subparsers(
        dest="diffusion_command", required=True)
    pretrain = diffusion.add_parser("pretrain", help="train the base text-to-image model on one domain",
                                    formatter_class=HelpFormatter)
    diffusion_flags(pretrain, adapt=False)
    pretrain.set_defaults(func=cmd_diffusion_train)
    finetune = diffusion.add_parser("finetune", help="adapt a pretrained diffusion model to another domain with a "
                                                     "method", formatter_class=HelpFormatter)
    diffusion_flags(finetune, adapt=True)
    finetune.set_defaults(func=cmd_diffusion_train)
    generate = diffusion.add_parser("generate", help="a grid of images of one prompt, as PNG")
    generate.add_argument("run", help="a finished diffusion run directory or a cached model name")
    generate.add_argument("prompt", help='what to draw, e.g. "a chest X-ray, pneumonia"')
    generate.add_argument("-n", type=common.positive_int, default=16, help="images (default 16)")
    generate.add_argument("--out", default="grid.png", help="PNG file (default grid.png)")
    generate.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same images")
    generate.add_argument("--steps", type=common.positive_int, help="denoising steps (default: the run's)")
    generate.add_argument("--guidance", type=common.finite_float, help="classifier-free guidance scale (default: the run's)")
    generate.add_argument("--sampler", choices=("ddim", "ddpm"), help="sampler (default: the run's)")
    generate.set_defaults(func=cmd_diffusion_generate)
