"""What MAE pretraining buys: fine-tune the same ViT from an MAE checkpoint and from random init.

    python experiments/mae_pretraining/grid.py run --init mae=pneumonia-mae --init random
    python experiments/mae_pretraining/grid.py table

Every (dataset, init, method, fraction, seed) is one `medpeft.train.finetune` run with the
same budget; its summary goes to ``results/<dataset>/<init>-<method>-f<fraction>-s<seed>.json``
as soon as it finishes, so an interrupted grid resumes where it stopped (a half-finished run
resumes from its own checkpoint in ``runs/``). The seed also picks the label subset
(``fraction_seed = seed``), so the spread covers which images were labelled; MAE and random
init share the subset for a given seed. ``table`` writes ``results.md`` (mean ± std, %).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console

from medpeft.config import atomic_write_text, save_json
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, RunDir, TrainConfig
from medpeft.train import finetune

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA_ROOT = REPO.parent / "shared" / "data" / "medmnist"
DATASETS = ("pneumoniamnist", "breastmnist")
METHODS = ("linear", "lora", "fft")
FRACTIONS = (0.01, 0.1, 1.0)
SEEDS = (0, 1, 2)


def run_config(dataset: str, checkpoint: str | None, method: str, fraction: float, seed: int,
               args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        data=DataConfig(spec=f"medmnist:{dataset}", data_root=str(args.data_root), fraction=fraction,
                        fraction_seed=seed),
        backbone=BackboneConfig(args.backbone, img_size=args.img_size, patch_size=args.patch_size,
                                checkpoint=checkpoint),
        method=method,
        # MAE's fine-tuning recipe decays lower layers' lr (0.75); a random init has nothing
        # to protect in its lower layers, so it gets the stronger baseline without decay.
        train=TrainConfig(epochs=epochs_for(fraction, args), seed=seed, n_bootstrap=200,
                          layer_decay=0.75 if checkpoint else 1.0))


def epochs_for(fraction: float, args: argparse.Namespace) -> int:
    return args.full_epochs if fraction == 1.0 and args.full_epochs else args.epochs


def run_one(key: dict, config: RunConfig, result: Path, run_dir: Path, console: Console) -> dict:
    run = RunDir(run_dir)
    started = time.perf_counter()
    if run.is_complete():
        metrics = run.load_metrics()
    else:
        metrics = finetune(config, run_dir, resume=True, console=Console(quiet=True), progress=False)
    summary = {**key, "test_auroc": metrics["test"]["auroc"], "test_auroc_ci95": metrics["test"].get("auroc_ci95"),
               "val_auroc": metrics["val"]["auroc"], "test_acc": metrics["test"]["acc"],
               "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
               "trainable_params": metrics["trainable_params"], "wall_time_s": metrics["wall_time_s"],
               "train_img_per_s": metrics["train_img_per_s"], "train_size": metrics.get("train_size"),
               "config": config.to_dict()}
    save_json(result, summary)
    console.print(f"{result.stem:<40} test AUROC {summary['test_auroc']:.4f}  "
                  f"({time.perf_counter() - started:.0f} s)")
    return summary


def cmd_run(args: argparse.Namespace) -> None:
    console = Console()
    inits = dict(item.split("=", 1) if "=" in item else (item, None) for item in args.init)
    for dataset in args.datasets:
        for seed in args.seeds:
            for fraction in args.fractions:
                for method in args.methods:
                    for init, checkpoint in inits.items():
                        name = f"{init}-{method}-f{fraction:g}-s{seed}"
                        result = args.results / dataset / f"{name}.json"
                        if result.is_file():
                            continue
                        key = dict(dataset=dataset, init=init, checkpoint=checkpoint, method=method,
                                   fraction=fraction, seed=seed, epochs=epochs_for(fraction, args))
                        config = run_config(dataset, checkpoint, method, fraction, seed, args)
                        run_one(key, config, result, args.runs / dataset / name, console)


def load_results(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/*.json"))]


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f} (n=1)"
    spread = 100 * statistics.stdev(values)
    return f"{mean:.1f} ± {spread:.1f}" + ("" if len(values) == len(SEEDS) else f" (n={len(values)})")


def table(results: list[dict]) -> str:
    """One Markdown table per dataset: rows method x init, columns label fractions, then gains."""
    lines = []
    for dataset in [d for d in DATASETS if any(r["dataset"] == d for r in results)]:
        rows = [r for r in results if r["dataset"] == dataset]
        fractions = sorted({r["fraction"] for r in rows})
        inits = list(dict.fromkeys(r["init"] for r in rows))
        lines += [f"### {dataset}: test AUROC (%), mean ± std over seeds", "",
                  "| method | init | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " |",
                  "|---|---|" + "---:|" * len(fractions)]
        for method in [m for m in METHODS if any(r["method"] == m for r in rows)]:
            for init in inits:
                cells = [cell([r["test_auroc"] for r in rows if (r["method"], r["init"], r["fraction"])
                               == (method, init, f)]) for f in fractions]
                lines.append(f"| {method} | {init} | " + " | ".join(cells) + " |")
            if len(inits) == 2:
                gains = []
                for f in fractions:
                    by_seed = {init: {r["seed"]: r["test_auroc"] for r in rows
                                      if (r["method"], r["init"], r["fraction"]) == (method, init, f)}
                               for init in inits}
                    paired = [by_seed[inits[0]][s] - by_seed[inits[1]][s]
                              for s in by_seed[inits[0]] if s in by_seed[inits[1]]]
                    gains.append(cell(paired))
                lines.append(f"| {method} | **{inits[0]} − {inits[1]}** | "
                             + " | ".join(f"**{g}**" for g in gains) + " |")
        lines.append("")
    return "\n".join(lines)


def cmd_table(args: argparse.Namespace) -> None:
    text = table(load_results(args.results))
    atomic_write_text(args.out, text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fine-tune every missing grid cell")
    run.add_argument("--init", action="append", required=True,
                     help="NAME=CHECKPOINT (a file or cached name) or `random`; repeat")
    run.add_argument("--datasets", nargs="+", default=list(DATASETS))
    run.add_argument("--methods", nargs="+", default=list(METHODS))
    run.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    run.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--full-epochs", type=int, default=None,
                     help="epochs at 100%% labels (default: --epochs); same for every init")
    run.add_argument("--backbone", default="vit_tiny")
    run.add_argument("--img-size", type=int, default=28)
    run.add_argument("--patch-size", type=int, default=4)
    run.add_argument("--data-root", type=Path, default=DATA_ROOT)
    run.add_argument("--results", type=Path, default=HERE / "results")
    run.add_argument("--runs", type=Path, default=REPO / "runs" / "mae_pretraining")
    run.set_defaults(func=cmd_run)
    tab = sub.add_parser("table", help="Markdown table of the results")
    tab.add_argument("--results", type=Path, default=HERE / "results")
    tab.add_argument("--out", type=Path, default=HERE / "results.md")
    tab.set_defaults(func=cmd_table)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
