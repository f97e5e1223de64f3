"""Command line: each sub-command parses its arguments and calls one library function.

No logic lives here beyond turning flags into typed configs (litgpt's habit); everything a
command does is importable and testable without the CLI. Exit codes: 0 done, 1 training
diverged, 2 bad input (one clear line, no traceback), 130 interrupted.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from pathlib import Path

from .console import make_console, print_error

console = make_console()
FORMAT_HELP = "output: table (terminal), md, csv or json"


def _format_flag(parser: argparse.ArgumentParser) -> None:
    from .table import FORMATS

    parser.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {value}")
    return value


def _method_name(text: str) -> str:
    from .methods import METHODS

    if text not in METHODS:
        raise argparse.ArgumentTypeError(METHODS.unknown_message(text))
    return text


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
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


def cmd_data_info(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .data.summary import describe, split_table

    splits = load_dataset(args.spec, data_root=args.data_root, fraction=args.fraction,
                          fraction_seed=args.fraction_seed, skip_bad=args.skip_bad,
                          verify=args.verify)
    if args.format == "table":
        console.print(describe(splits))
    split_table(splits).print(console, args.format)
    return 0


def _finetune_flags(parser: argparse.ArgumentParser) -> None:
    from .cliargs import add_dataclass_flags, add_method_flags
    from .methods import METHODS
    from .models import BackboneConfig
    from .runtime import DataConfig, TrainConfig

    parser.add_argument("--config", help="YAML recipe (e.g. a run's config.yaml); flags override it")
    parser.add_argument("--out", help="run directory; if not given: runs/<data>-<backbone>-<method>-f<fraction>-s<seed>")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel processes (DistributedDataParallel: gloo "
                                                             "on CPU, NCCL on GPUs); --batch-size is their total")
    parser.add_argument("--method", dest="run.method", type=_method_name, default=argparse.SUPPRESS,
                        metavar="METHOD", help=f"PEFT method (default lora): {', '.join(METHODS.names())}")
    add_dataclass_flags(parser, DataConfig, "data", rename={"spec": "data"})
    add_dataclass_flags(parser, BackboneConfig, "backbone", rename={"name": "backbone"})
    add_dataclass_flags(parser, TrainConfig, "train")
    add_method_flags(parser, METHODS)


def run_config_from_args(args: argparse.Namespace):
    """Defaults, then --config YAML, then the flags typed on the command line."""
    from .cliargs import given_values
    from .serialization import load_yaml, merge
    from .runtime import RunConfig

    values = load_yaml(args.config) if args.config else {}
    given = given_values(args)
    values = merge(values, {k: v for k, v in given.items() if k not in ("run", "method_options")})
    if "method" in given.get("run", {}):
        if given["run"]["method"] != values.get("method"):
            values["method_options"] = {}  # a recipe's options belong to its own method
        values["method"] = given["run"]["method"]
    options = values.get("method_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{args.config}: method_options must be a mapping such as {{rank: 8}}")
    values["method_options"] = merge(options, given.get("method_options", {}))
    return RunConfig.from_dict(values)


def default_run_dir(config) -> Path:
    from .runtime import run_slug

    return Path("runs") / run_slug(config.data.spec, config.backbone.name or "vit_small", config.method,
                                   f"f{config.data.fraction:g}", f"s{config.train.seed}")


def cmd_finetune(args: argparse.Namespace) -> int:
    from .runtime import TrainingDiverged
    from .train import finetune, finetune_parallel

    config = run_config_from_args(args)
    out = Path(args.out) if args.out else default_run_dir(config)
    console.print(f"run directory: {out}")
    try:
        if args.nproc == 1:
            finetune(config, out, resume=args.resume, console=console, progress=not args.no_progress)
        else:
            finetune_parallel(config, out, args.nproc, resume=args.resume, console=console,
                              progress=not args.no_progress)
    except TrainingDiverged as err:
        print_error(console, str(err), "training diverged")
        return 1
    return 0


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 10,20 — got {text!r}") from None


def _pretrain_flags(parser: argparse.ArgumentParser) -> None:
    from .cliargs import add_dataclass_flags
    from .models import BackboneConfig
    from .pretrain.config import OBJECTIVES, MAEConfig, PretrainDataConfig, PretrainTrainConfig, SimCLRConfig

    parser.add_argument("--config", help="YAML recipe (e.g. a pretraining run's config.yaml); flags override it")
    parser.add_argument("--out", help="run directory; if not given: runs/pretrain/<name or data-backbone>")
    parser.add_argument("--name", help="also publish the final checkpoint to the named cache "
                                       "(then `medpeft finetune --checkpoint NAME`)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    parser.add_argument("--data", dest="data.specs", action="extend", nargs="+", default=argparse.SUPPRESS,
                        metavar="SPEC", help="dataset spec whose training images are used (labels ignored); repeat to pool")
    parser.add_argument("--save-at", dest="train.save_at", type=_int_list, default=argparse.SUPPRESS,
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
    from .cliargs import given_values
    from .serialization import load_yaml, merge
    from .pretrain import PretrainConfig

    given = given_values(args)
    values = merge(load_yaml(args.config) if args.config else {}, {**given.pop("top", {}), **given})
    return PretrainConfig.from_dict(values)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .models.cache import checkpoint_dir
    from .pretrain import pretrain
    from .runtime import TrainingDiverged, run_slug

    if args.name is not None:
        checkpoint_dir(args.name)  # a bad name fails before anything runs
    config = pretrain_config_from_args(args)
    backbone = config.backbone.name or "vit_small"
    out = Path(args.out) if args.out else Path("runs/pretrain") / (args.name or run_slug(config.data.specs[0], backbone))
    console.print(f"run directory: {out}")
    try:
        pretrain(config, out, resume=args.resume, name=args.name, console=console,
                 progress=not args.no_progress)
    except TrainingDiverged as err:
        print_error(console, str(err), "pretraining diverged")
        return 1
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .inference import evaluate_run
    from .studies.listings import metrics_table

    metrics = evaluate_run(args.run, data_spec=args.data, data_root=args.data_root, split=args.split,
                           n_bootstrap=args.n_bootstrap)
    metrics_table(metrics, title=f"{args.run} on {args.data or 'its own data'} ({args.split})").print(
        console, args.format)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .cliargs import given_values
    from .serialization import from_dict
    from .inference import PredictConfig, predict_files
    from .table import Table

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


def cmd_serve(args: argparse.Namespace) -> int:
    from .cliargs import given_values
    from .serialization import from_dict, load_yaml, merge
    from .serve.config import ServeConfig
    from .serve.server import api_key_from, serve

    values = merge(load_yaml(args.config) if args.config else {}, given_values(args).get("serve", {}))
    config = from_dict(ServeConfig, values, where="serve")
    serve(args.runs, config, api_key=api_key_from(args.api_key_file), console=console)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .inference import export_run

    result = export_run(args.run, args.out)
    console.print(f"{result.path}: {result.note} (largest output difference to the adapted model on a probe "
                  f"batch: {result.max_abs_diff:.2g})")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .studies.listings import method_options_table, methods_table

    if args.name:
        method_options_table(args.name).print(console, args.format)
    else:
        methods_table(args.backbone, img_size=args.img_size, patch_size=args.patch_size,
                      num_outputs=args.num_outputs).print(console, args.format)
    return 0


def cmd_study_run(args: argparse.Namespace) -> int:
    from .studies.runner import run_study

    code = run_study(args.study, workers=args.workers, storage=args.storage, work_dir=args.dir,
                     threads=args.threads, console=console)
    if args.report:
        cmd_study_report(args)
    return code


def cmd_study_worker(args: argparse.Namespace) -> int:
    from .studies.runner import run_worker

    return run_worker(args.study, storage=args.storage, work_dir=args.dir, threads=args.threads,
                      worker_id=args.id, console=console)


def cmd_study_report(args: argparse.Namespace) -> int:
    from .studies.runner import report_study

    also = getattr(args, "also", None) or []
    command = args.command_line if args.study_command == "run" else " && ".join(
        [f"medpeft study run {shlex.quote(str(study))}" for study in [args.study, *also]] + [args.command_line])
    report_study(args.study, storage=args.storage, work_dir=args.dir, out=getattr(args, "out", None),
                 console=console, fmt=getattr(args, "format", "table"), command=command, also=also,
                 title=getattr(args, "title", None))
    return 0


def cmd_study_status(args: argparse.Namespace) -> int:
    from .studies.runner import study_status

    study_status(args.study, storage=args.storage, work_dir=args.dir, console=console)
    return 0


def _study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="study file (experiments/<study>/study.yaml) or its folder")
    parser.add_argument("--storage", help="database URL shared by all workers, e.g. postgresql://user:pw@host/db "
                                          "(default: a SQLite file study.db in the study's folder)")
    parser.add_argument("--dir", help="folder for the storage file, runs and logs (default: the study file's folder)")


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ------------------------------------------------------------------------------ diffusion

def _bool_list(text: str) -> list[bool]:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        return [words[w.lower()] for w in text.replace(",", " ").split()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true/false per UNet level, e.g. false,false,true — got {text!r}") from None


def _diffusion_method_name(text: str) -> str:
    from .diffusion import DIFFUSION_METHODS

    if text not in DIFFUSION_METHODS:
        raise argparse.ArgumentTypeError(DIFFUSION_METHODS.unknown_message(text))
    return text


def _diffusion_flags(parser: argparse.ArgumentParser, adapt: bool) -> None:
    from .cliargs import add_dataclass_flags, add_method_flags
    from .diffusion import (DIFFUSION_METHODS, CaptionConfig, DiffusionDataConfig, DiffusionTrainConfig,
                            SampleConfig, ScoreConfig, TextConfig, UNetConfig)

    parser.add_argument("--config", help="YAML recipe (e.g. a diffusion run's config.yaml); flags override it")
    parser.add_argument("--out", help="run directory (default: runs/diffusion/<data>-<method>-f<fraction>-s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    parser.add_argument("--name", help="also publish the model to the named cache (then --base NAME)")
    parser.add_argument("--data", dest="data.specs", action="extend", nargs="+", default=argparse.SUPPRESS,
                        metavar="SPEC", help="dataset spec whose training images (with captions) are used; repeat to pool")
    if adapt:
        parser.add_argument("--base", dest="run.base", default=argparse.SUPPRESS, required=True,
                            help="the pretrained diffusion model: a run directory or a cached name")
        parser.add_argument("--method", dest="run.method", type=_diffusion_method_name, default=argparse.SUPPRESS,
                            metavar="METHOD", required=True,
                            help=f"adaptation method: {', '.join(DIFFUSION_METHODS.names())}")
        add_method_flags(parser, DIFFUSION_METHODS)
    parser.add_argument("--attention", dest="unet.attention", type=_bool_list, default=argparse.SUPPRESS,
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
    from .cliargs import given_values
    from .serialization import load_yaml, merge
    from .diffusion import DiffusionConfig
    from .diffusion.training import with_base_defaults

    values = load_yaml(args.config) if args.config else {}
    given = given_values(args)
    run = given.pop("run", {})
    options = given.pop("method_options", {})
    values = merge(values, given)
    if "method" in run and run["method"] != values.get("method"):
        values["method_options"] = {}
    values.update(run)
    values["method_options"] = merge(values.get("method_options") or {}, options)
    return DiffusionConfig.from_dict(with_base_defaults(values))


def cmd_diffusion_train(args: argparse.Namespace) -> int:
    from .diffusion import train_diffusion
    from .runtime import TrainingDiverged, run_slug

    config = diffusion_config_from_args(args)
    out = Path(args.out) if args.out else Path("runs/diffusion") / run_slug(
        config.data.specs[-1], config.method, f"f{config.data.fraction:g}", f"s{config.train.seed}")
    console.print(f"run directory: {out}")
    try:
        train_diffusion(config, out, resume=args.resume, name=args.name, console=console,
                        progress=not args.no_progress)
    except TrainingDiverged as err:
        print_error(console, str(err), "training diverged")
        return 1
    return 0


def cmd_diffusion_generate(args: argparse.Namespace) -> int:
    import dataclasses

    from .diffusion import images_for, load_model
    from .diffusion.training import read_channels, resolve_model
    from .diffusion.sample import save_grid

    unet, config, _ = load_model(args.run)
    changes = {k: v for k, v in {"steps": args.steps, "guidance": args.guidance, "sampler": args.sampler}.items()
               if v is not None}
    config = dataclasses.replace(config, sample=dataclasses.replace(config.sample, **changes))
    images = images_for(unet, config, [args.prompt] * args.n, read_channels(resolve_model(args.run)), args.seed)
    path = save_grid(images, args.out, title=args.prompt)
    console.print(f"{args.n} images of {args.prompt!r} (seed {args.seed}, {config.sample.sampler} "
                  f"{config.sample.steps} steps, guidance {config.sample.guidance:g}): {path}")
    return 0


def cmd_diffusion_methods(args: argparse.Namespace) -> int:
    from .diffusion.methods_table import methods_table

    methods_table(img_size=args.img_size).print(console, args.format)
    return 0


def cmd_diffusion_study(args: argparse.Namespace) -> int:
    from .studies.generative import DIFFUSION
    from .studies.generative_report import report_diffusion_study
    from .studies.runner import run_study, run_worker, study_status

    if args.diffusion_study_command == "run":
        code = run_study(args.study, workers=args.workers, storage=args.storage, work_dir=args.dir,
                         threads=args.threads, console=console, kind=DIFFUSION)
        if args.report:
            report_diffusion_study(args.study, storage=args.storage, work_dir=args.dir, console=console,
                                   command=args.command_line)
        return code
    if args.diffusion_study_command == "worker":
        return run_worker(args.study, storage=args.storage, work_dir=args.dir, threads=args.threads,
                          worker_id=args.id, console=console, kind=DIFFUSION)
    if args.diffusion_study_command == "status":
        study_status(args.study, storage=args.storage, work_dir=args.dir, console=console, kind=DIFFUSION)
        return 0
    report_diffusion_study(args.study, storage=args.storage, work_dir=args.dir, out=args.out, console=console,
                           fmt=args.format, command=f"medpeft diffusion study run {shlex.quote(args.study)} && "
                                                    f"{args.command_line}")
    return 0


def _diffusion_commands(commands) -> None:
    from .cliargs import HelpFormatter

    diffusion = commands.add_parser("diffusion", help="text-to-image diffusion: pretrain, adapt with PEFT, "
                                                      "generate, score").add_subparsers(
        dest="diffusion_command", required=True)
    pretrain = diffusion.add_parser("pretrain", help="train the base text-to-image model on one domain",
                                    formatter_class=HelpFormatter)
    _diffusion_flags(pretrain, adapt=False)
    pretrain.set_defaults(func=cmd_diffusion_train)
    finetune = diffusion.add_parser("finetune", help="adapt a pretrained diffusion model to another domain with a "
                                                     "method", formatter_class=HelpFormatter)
    _diffusion_flags(finetune, adapt=True)
    finetune.set_defaults(func=cmd_diffusion_train)
    generate = diffusion.add_parser("generate", help="a grid of images of one prompt, as PNG")
    generate.add_argument("run", help="a finished diffusion run directory or a cached model name")
    generate.add_argument("prompt", help='what to draw, e.g. "a chest X-ray, pneumonia"')
    generate.add_argument("-n", type=_positive_int, default=16, help="images (default 16)")
    generate.add_argument("--out", default="grid.png", help="PNG file (default grid.png)")
    generate.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same images")
    generate.add_argument("--steps", type=_positive_int, help="denoising steps (default: the run's)")
    generate.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the run's)")
    generate.add_argument("--sampler", choices=("ddim", "ddpm"), help="sampler (default: the run's)")
    generate.set_defaults(func=cmd_diffusion_generate)
    methods = diffusion.add_parser("methods", help="adaptation methods with their trainable parameters")
    methods.add_argument("--img-size", type=_positive_int, default=28)
    _format_flag(methods)
    methods.set_defaults(func=cmd_diffusion_methods)
    study = diffusion.add_parser("study", help="the generative table: methods x fractions x seeds").add_subparsers(
        dest="diffusion_study_command", required=True)
    run = study.add_parser("run", help="run every missing or failed cell (base model and judge first)")
    _study_arguments(run)
    run.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    run.add_argument("--threads", type=_positive_int, help="torch threads per worker (default: cores / workers)")
    run.add_argument("--report", action="store_true", help="write the report when the study is done")
    worker = study.add_parser("worker", help="one worker in this process")
    _study_arguments(worker)
    worker.add_argument("--threads", type=_positive_int, help="torch threads (default: all)")
    worker.add_argument("--id", default="", help="a name for this worker in logs")
    status = study.add_parser("status", help="cells done, running, waiting and failed")
    _study_arguments(status)
    report = study.add_parser("report", help="the generative table (report.md, results.csv, grids)")
    _study_arguments(report)
    report.add_argument("--out", help="folder for the report (default: <study folder>/report)")
    _format_flag(report)
    for parser in (run, worker, status, report):
        parser.set_defaults(func=cmd_diffusion_study)


def build_parser() -> argparse.ArgumentParser:
    from .cliargs import HelpFormatter, add_dataclass_flags
    from .inference.predict import PredictConfig
    from .serve.config import ServeConfig

    parser = argparse.ArgumentParser(prog="medpeft", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="inspect datasets").add_subparsers(dest="data_command",
                                                                               required=True)
    info = data.add_parser("info", help="sizes, task, labels and positives per split")
    _add_data_arguments(info)
    info.add_argument("--verify", choices=("none", "exists", "decode"), default="exists",
                      help="check image files: none (labels only), exists (default), or decode every image "
                           "(--skip-bad decodes every image, as training does)")
    _format_flag(info)
    info.set_defaults(func=cmd_data_info)

    finetune = commands.add_parser("finetune", help="fine-tune a backbone with a PEFT method",
                                   formatter_class=HelpFormatter)
    _finetune_flags(finetune)
    finetune.set_defaults(func=cmd_finetune)

    pretrain = commands.add_parser("pretrain", help="MAE-pretrain a ViT on unlabeled training images",
                                   formatter_class=HelpFormatter)
    _pretrain_flags(pretrain)
    pretrain.set_defaults(func=cmd_pretrain)

    evaluate = commands.add_parser("eval", help="score a finished run (optionally on other data)")
    evaluate.add_argument("run", help="run directory")
    evaluate.add_argument("--data", help="dataset spec to score on (default: the run's own); it must "
                                         "have the run's labels in the same order")
    evaluate.add_argument("--data-root", help="data folder for --data")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--n-bootstrap", type=_non_negative_int, default=1000,
                          help="resamples for the AUROC CI (0 = none)")
    _format_flag(evaluate)
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

    serve = commands.add_parser("serve", help="HTTP API and web page: one backbone in memory, each run's "
                                              "adapter chosen per request", formatter_class=HelpFormatter)
    serve.add_argument("runs", nargs="+", metavar="[NAME=]RUN",
                       help="run directories, named by their folder or NAME= (the name requests use)")
    serve.add_argument("--config", help="YAML file of the options below; flags override it")
    serve.add_argument("--api-key-file", help="file whose first line is the API key every request must send "
                                              "(default: $MEDPEFT_API_KEY; neither: no key)")
    add_dataclass_flags(serve, ServeConfig, "serve")
    serve.set_defaults(func=cmd_serve)

    export = commands.add_parser("export", help="write a finished run as a timm model for inference "
                                                "(safetensors + config.json), merged where its method merges")
    export.add_argument("run", help="run directory")
    export.add_argument("--out", help="export folder (default: <run>/export)")
    export.set_defaults(func=cmd_export)

    methods = commands.add_parser("methods", help="list PEFT methods with trainable parameters, or one "
                                                  "method's options")
    methods.add_argument("name", nargs="?", type=_method_name,
                         help="a method: print its options, their help and defaults")
    methods.add_argument("--backbone", default="vit_base", help="short or timm name (default vit_base)")
    methods.add_argument("--img-size", type=int, default=224)
    methods.add_argument("--patch-size", type=int, default=None)
    methods.add_argument("--num-outputs", type=int, default=14, help="head width (default 14, NIH)")
    _format_flag(methods)
    methods.set_defaults(func=cmd_methods)

    study = commands.add_parser("study", help="comparative studies: grids and searches over datasets, "
                                              "fractions, backbones, methods and seeds").add_subparsers(
        dest="study_command", required=True)
    run = study.add_parser("run", help="run every missing or failed cell with N local workers; "
                                       "the same command elsewhere joins a shared --storage")
    _study_arguments(run)
    run.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    run.add_argument("--threads", type=_positive_int, help="torch threads per worker (default: cores / workers)")
    run.add_argument("--report", action="store_true", help="write the report when the study is done")
    run.set_defaults(func=cmd_study_run)
    worker = study.add_parser("worker", help="one worker in this process (what `study run` starts N of)")
    _study_arguments(worker)
    worker.add_argument("--threads", type=_positive_int, help="torch threads (default: all)")
    worker.add_argument("--id", default="", help="a name for this worker in logs")
    worker.set_defaults(func=cmd_study_worker)
    report = study.add_parser("report", help="tables (md, csv, html) and plots of the finished cells")
    _study_arguments(report)
    report.add_argument("--out", help="folder for the report (default: <study folder>/report)")
    report.add_argument("--with", dest="also", action="append", metavar="STUDY",
                        help="another study (file or folder, its storage in its folder) whose finished cells "
                             "join the same tables, e.g. the other slices of one study; repeatable")
    report.add_argument("--title", help="the report's title (default: the first study's)")
    _format_flag(report)
    report.set_defaults(func=cmd_study_report)
    status = study.add_parser("status", help="cells done, running, waiting and failed")
    _study_arguments(status)
    status.set_defaults(func=cmd_study_status)

    _diffusion_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.command_line = "medpeft " + shlex.join(argv)  # what reports print as "Made by"
    warnings.filterwarnings("default", category=UserWarning)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # user errors: one clear line, no traceback
        print_error(console, str(err))
        return 2
    except KeyboardInterrupt:
        console.print("interrupted", style="yellow")
        return 130


if __name__ == "__main__":
    sys.exit(main())
