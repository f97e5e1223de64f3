"""The study engine's cost and its local parallelism, measured side by side in one run.

    .venv/bin/python benchmarks/study_workers.py [--images 1024] [--seeds 2] [--json out.json]

The same grid (synthetic-cxr with --images training images, a 2-block ViT-Tiny at 32 px, FFT and LoRA x fractions x seeds,
2 epochs per cell) runs twice from empty storage: with one worker process (2 torch threads)
and with two (1 thread each), as ``medpeft study run --workers N`` splits the cores. It prints

- wall time of each, and the speed-up of two workers over one;
- the engine's overhead per trial: the one-worker study's wall time minus the sum of its runs'
  own ``wall_time_s`` (what fine-tuning itself took, from each run's metrics.json), divided by
  the number of cells. It covers worker start-up (importing torch), enqueueing, claiming a cell
  in SQLite, building the run config, writing the run directory, recording the result and
  the progress line.

Both studies use SQLite in a temporary folder; nothing is written to the repository. Check
``uptime`` first: other jobs on the CPU change both numbers (the ratio less than the times).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

from medpeft.studies.runner import run_study
from medpeft.table import Table

BACKBONE = {"name": "vit_tiny", "img_size": 32, "patch_size": 8, "timm_kwargs": {"depth": 2}}


def study_file(folder: Path, fractions: list[float], seeds: int, images: int) -> Path:
    values = {
        "name": "bench-workers",
        "data": [{"spec": f"synthetic-cxr?n={images}&n_val=64&n_test=128&size=32", "label": "synth"}],
        "fractions": fractions,
        "seeds": list(range(seeds)),
        "backbones": [{"label": "tiny", "backbone": BACKBONE}],
        "methods": [{"name": "fft", "label": "FFT"}, {"name": "lora", "label": "LoRA", "options": {"rank": 4}}],
        "train": {"epochs": 2, "batch_size": 32, "n_bootstrap": 0},
    }
    folder.mkdir(parents=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def run_seconds(work: Path) -> list[float]:
    """Each finished run's own fine-tuning time (metrics.json: wall_time_s)."""
    return [json.loads(p.read_text())["wall_time_s"] for p in sorted(work.glob("runs/*/metrics.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--images", type=int, default=1024, help="training images (cell size)")
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()
    console = Console()
    quiet = Console(quiet=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            work = Path(tmp) / f"w{workers}"
            path = study_file(work, args.fractions, args.seeds, args.images)
            started = time.perf_counter()
            code = run_study(path, workers=workers, console=quiet)
            seconds = time.perf_counter() - started
            runs = run_seconds(work)
            if code != 0:
                raise SystemExit(f"the {workers}-worker study did not finish (exit {code}); see {work}/logs")
            results[workers] = {"seconds": seconds, "cells": len(runs), "run_seconds": sum(runs)}
            console.print(f"{workers} worker(s): {len(runs)} cells in {seconds:.1f} s")
    one, two = results[1], results[2]
    overhead = (one["seconds"] - one["run_seconds"]) / one["cells"]
    table = Table("Study engine: one vs two local workers (SQLite)", ["measure", "value"])
    table.add_row("cells", str(one["cells"]))
    table.add_row("1 worker, 2 threads: wall time", f"{one['seconds']:.1f} s")
    table.add_row("2 workers, 1 thread each: wall time", f"{two['seconds']:.1f} s")
    table.add_row("speed-up of 2 workers", f"{one['seconds'] / two['seconds']:.2f}x")
    table.add_row("fine-tuning inside the runs (1 worker)", f"{one['run_seconds']:.1f} s")
    table.add_row("engine overhead per trial (1 worker)", f"{overhead:.2f} s")
    table.print(console)
    if args.json:
        Path(args.json).write_text(json.dumps({**{f"workers_{k}": v for k, v in results.items()},
                                               "speedup": one["seconds"] / two["seconds"],
                                               "overhead_per_trial_s": overhead}, indent=2))


if __name__ == "__main__":
    main()
