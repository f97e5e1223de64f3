"""medpeft's performance ratios, each measured side by side in one run (``make bench``).

    .venv/bin/python benchmarks/run_all.py [--quick] [--threads N]

1. **Method vs full fine-tuning**: training-step throughput (forward + backward + AdamW step,
   img/s) of every ViT method on the same backbone and batch, as a ratio to FFT, beside the
   trainable share. PEFT saves optimizer state and weight gradients, not the forward pass, so
   on a CPU the ratios sit near 1-2x; on a GPU the memory saving is what matters.
2. **Ours vs the reference library**: medpeft's LoRA on the q and v slices of timm's fused
   qkv (MED-PEFT's factorisation, written here) against HF peft's LoRA on the whole qkv Linear
   (``lora-qkv``, the library's own code) at the same rank: training img/s and merge time.
3. **Cached vs uncached data**: the synthetic-cxr split generated from scratch, read back
   from the disk cache, and served from the in-process cache.

Timings are medians of ``--repeats`` runs after a warm-up, all in this process, so the ratios
compare like with like; absolute numbers move with the machine's load (check ``uptime``).
Every line printed is a measurement; nothing is hard-coded.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from medpeft.methods import METHODS, apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone

VIT = BackboneConfig("vit_tiny", img_size=64, patch_size=8, drop_path=0.0)
NUM_OUTPUTS = 5


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, lazy init)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step_fn(method_name: str, batch: int, options: dict | None = None):
    """A closure running one optimizer step of ``method_name`` on a fixed random batch, the
    adapted model, its method and its trainable share."""
    torch.manual_seed(0)
    method = create_method(method_name, options)
    model = apply_method(create_backbone(VIT, NUM_OUTPUTS), method).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    images = torch.randn(batch, 3, VIT.img_size, VIT.img_size)
    targets = torch.randint(0, 2, (batch, NUM_OUTPUTS)).float()
    criterion = torch.nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        criterion(model(images), targets).backward()
        optimizer.step()

    trainable, total = count_parameters(model)
    return step, model, method, trainable / total


def methods_vs_fft(console: Console, batch: int, repeats: int, names: list[str]) -> None:
    rows = []
    for name in names:
        step, _, _, share = train_step_fn(name, batch)
        rows.append((name, share, batch / median_seconds(step, repeats)))
    fft = next(speed for name, _, speed in rows if name == "fft")
    table = Table(title=f"1. Training throughput vs FFT ({VIT.name} {VIT.img_size} px / patch {VIT.patch_size}, "
                        f"batch {batch}, {torch.get_num_threads()} threads)")
    for column in ("method", "trainable", "img/s", "vs FFT"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, share, speed in sorted(rows, key=lambda r: -r[2]):
        table.add_row(name, f"{100 * share:.2f}%", f"{speed:.0f}", f"{speed / fft:.2f}x")
    console.print(table)


def ours_vs_peft(console: Console, batch: int, repeats: int) -> None:
    table = Table(title=f"2. medpeft LoRA (q,v slices) vs HF peft LoRA (whole qkv), rank 8, batch {batch}")
    for column in ("implementation", "trainable", "train img/s", "merge ms"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    speeds = {}
    for name, label in (("lora", "medpeft lora (q, v)"), ("lora-qkv", "peft lora-qkv (q, k, v)")):
        step, model, method, share = train_step_fn(name, batch, {"rank": 8})
        speeds[name] = batch / median_seconds(step, repeats)
        merge = median_seconds(lambda: (method.merge(model), method.unmerge(model)), repeats)
        table.add_row(label, f"{100 * share:.2f}%", f"{speeds[name]:.0f}", f"{1000 * merge:.1f}")
    console.print(table)
    console.print(f"   throughput ratio medpeft/peft: {speeds['lora'] / speeds['lora-qkv']:.2f}x "
                  "(merge ms = one merge + one unmerge)")


def data_cache(console: Console, n: int, size: int) -> None:
    from medpeft.data.sources import synthetic_cxr as synth

    previous = os.environ.get(synth.CACHE_ENV)
    with tempfile.TemporaryDirectory() as cache:
        os.environ[synth.CACHE_ENV] = cache
        synth.load_split.cache_clear()
        start = time.perf_counter()
        synth.load_split(0, "train", n, size)
        generate = time.perf_counter() - start
        synth.load_split.cache_clear()
        start = time.perf_counter()
        synth.load_split(0, "train", n, size)
        disk = time.perf_counter() - start
        start = time.perf_counter()
        synth.load_split(0, "train", n, size)
        memory = time.perf_counter() - start
        synth.load_split.cache_clear()
    if previous is None:
        os.environ.pop(synth.CACHE_ENV)
    else:
        os.environ[synth.CACHE_ENV] = previous
    table = Table(title=f"3. synthetic-cxr: {n} images at {size} px")
    for column in ("path", "seconds", "vs generating"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row("generate (no cache)", f"{generate:.3f}", "1x")
    table.add_row("disk cache (.npz)", f"{disk:.4f}", f"{generate / disk:.0f}x faster")
    table.add_row("in-process cache", f"{memory:.6f}", f"{generate / max(memory, 1e-9):.0f}x faster")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and methods (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    repeats = 3 if args.quick else 7
    vit_methods = [name for name, cls in METHODS.items() if "vit" in cls.families]
    if args.quick:
        vit_methods = ["fft", "linear", "lora", "ssf", "vpt-deep"]
    console.print(f"load: {os.getloadavg()[0]:.2f} (1-min average; other jobs skew absolute numbers)")
    methods_vs_fft(console, args.batch, repeats, vit_methods)
    ours_vs_peft(console, args.batch, repeats)
    data_cache(console, n=200 if args.quick else 1000, size=64)


if __name__ == "__main__":
    main()
