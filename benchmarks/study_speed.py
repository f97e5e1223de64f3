"""A 40-cell study of small cells, end to end, with this checkout and with an earlier revision,
side by side in one run (issue 25: "at least 2x faster than at fd091e2").

    .venv/bin/python benchmarks/study_speed.py [--old fd091e2] [--workers 2] [--seeds 10] [--json out.json]

The study has the shape of the 1% and 10% columns of the science studies: PneumoniaMNIST (it
ships inside medpeft), a 6-block ViT-Tiny at 28 px, the linear probe and LoRA r=8 at 1% and
10% of the labels, one label subset per seed (``vary_subset``: a file both revisions read), at
least 150 optimiser steps, up to 100 epochs with patience 10, a 500-resample test CI; random
initialisation, so no cached foundation model is involved. Each revision runs it from empty
SQLite storage with ``medpeft study run --workers N`` in a subprocess: the earlier one from a
``git worktree`` of ``--old`` put first on ``PYTHONPATH`` (its study workers inherit it), this
one from ``src/``. It prints each wall time, their ratio, the cells' summed fine-tuning time
and the mean test AUROC of each (the same cells: equal up to rounding unless training changed).

Run it on an idle machine (``uptime``): the ratio is measured side by side, the seconds are not
comparable across machines. Writes only under a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

from medpeft.table import Table

REPO = Path(__file__).resolve().parents[1]


def study_values(seeds: int) -> dict:
    return {
        "name": "bench-study-speed",
        "data": [{"spec": "medmnist:pneumoniamnist", "label": "PneumoniaMNIST"}],
        "fractions": [0.01, 0.1],
        "seeds": list(range(seeds)),
        "vary_subset": True,
        "backbones": [{"label": "ViT-Tiny", "backbone": {"name": "vit_tiny", "img_size": 28, "patch_size": 7,
                                                         "drop_path": 0.0, "timm_kwargs": {"depth": 6}}}],
        "methods": [{"name": "linear", "label": "Linear probe"},
                    {"name": "lora", "label": "LoRA r=8", "options": {"rank": 8}}],
        "train": {"epochs": 100, "batch_size": 32, "min_steps": 150, "patience": 10, "n_bootstrap": 500},
    }


def run(label: str, folder: Path, source: Path, workers: int, seeds: int, console: Console) -> dict:
    folder.mkdir(parents=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study_values(seeds), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(source), "MEDPEFT_CACHE": str(folder / "cache")}
    env.pop("MEDPEFT_CHECKPOINT_SECONDS", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "medpeft.cli", "study", "run", str(path), "--workers", str(workers),
                           ], env=env, cwd=folder, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label}: the study failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-2000:]}\nlogs: {folder}/logs")
    metrics = [json.loads(p.read_text()) for p in sorted(folder.glob("runs/*/metrics.json"))]
    result = {"seconds": seconds, "cells": len(metrics),
              "run_seconds": sum(m["wall_time_s"] for m in metrics),
              "mean_test_auroc": statistics.fmean(m["test"]["auroc"] for m in metrics)}
    console.print(f"{label}: {result['cells']} cells in {seconds:.1f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default="fd091e2", help="the earlier revision (default: fd091e2)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=10, help="label subsets per fraction (cells = 4 x seeds)")
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="medpeft-study-speed-") as tmp:
        old_tree = Path(tmp) / "old-tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old_tree), args.old],
                       check=True)
        try:
            old = run(f"{args.old}", Path(tmp) / "old", old_tree / "src", args.workers, args.seeds, console)
            new = run("this checkout", Path(tmp) / "new", REPO / "src", args.workers, args.seeds, console)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
    table = Table(f"A {new['cells']}-cell study, {args.workers} workers: {args.old} vs this checkout",
                  ["measure", args.old, "this checkout", "ratio"])
    table.add_row("wall time, s", f"{old['seconds']:.1f}", f"{new['seconds']:.1f}",
                  f"{old['seconds'] / new['seconds']:.2f}x faster")
    table.add_row("fine-tuning inside the runs, s", f"{old['run_seconds']:.1f}", f"{new['run_seconds']:.1f}",
                  f"{old['run_seconds'] / new['run_seconds']:.2f}x")
    table.add_row("mean test AUROC", f"{old['mean_test_auroc']:.4f}", f"{new['mean_test_auroc']:.4f}", "")
    table.print(console)
    if args.json:
        Path(args.json).write_text(json.dumps({"old": args.old, "old_result": old, "new_result": new,
                                               "speedup": old["seconds"] / new["seconds"]}, indent=2))


if __name__ == "__main__":
    main()
