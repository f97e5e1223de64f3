"""medpeft's performance, each figure measured side by side in one run (``make bench``).

    .venv/bin/python benchmarks/run_all.py [--quick] [--threads N] [--json PATH] [--compile] [--precision bf16]

0. **Precision** (printed first): what ``--precision auto`` picks on this machine and why.
   Sections 1 and 2 time their training steps in fp32 unless ``--precision bf16`` (or ``auto``,
   whatever it picks here) runs their forward passes under bf16 autocast, as a training run does.
1. **Methods vs full fine-tuning**: training-step throughput (forward + backward + AdamW step,
   img/s) of every ViT method on the same backbone and batch, as a ratio to FFT, beside the
   trainable share and the training memory: weights + gradients + AdamW state + the
   activations autograd saves for backward (counted exactly from the saved tensors).
2. **medpeft LoRA vs HF peft**: medpeft's LoRA on the q and v slices of timm's fused qkv
   against HF peft's LoRA on the whole qkv Linear (``lora-qkv``), same rank, and against FFT,
   at the issue's two settings (ViT-Tiny patch 4 at 28 px batch 128; ViT-Small patch 8 at
   64 px batch 64).
3. **Frozen-feature caching**: one epoch of a linear probe and of partial-k (k=1) over the
   same images, uncached (the frozen blocks run every batch) vs cached
   (runtime/featurecache.py: the epoch trains only the rest), plus the one-off caching pass.
4. **Inference**: the plain timm model, the LoRA-adapted model (unmerged) and the merged model
   (``medpeft export``'s path), eval-mode img/s.
5. **FLOP/s**: the machine's measured fp32 matmul peak (a 2048² GEMM), and the FLOP/s achieved
   by FFT training steps and MAE pretraining steps at both settings of 2 (FLOPs counted by
   torch's FlopCounterMode).
6. **Data parallel**: two epochs of FFT on one process and on two (``--nproc 2``, DDP over
   gloo), same global batch: training img/s and the test AUROC (which should agree).
7. **Cached vs uncached data**: the synthetic-cxr split generated from scratch, read back
   from the disk cache, and served from the in-process cache.
8. **torch.compile** (``--compile``): FFT and LoRA training steps and inference, eager vs
   compiled (inductor).

Timings are medians of repeated runs after a warm-up, all in this process, and the contenders
of a comparison are timed in turn, round by round, so the ratios compare like with like even
when other jobs' load changes during the run; absolute numbers move with the machine's load, which is printed and
saved. Every figure is a measurement; nothing is hard-coded. ``--json`` (default
``runs/bench.json``) saves them all.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from medpeft.methods import METHODS, apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone
from medpeft.runtime import resolve_precision
from medpeft.runtime.featurecache import FrozenSuffix, cache_features, plan_cache

NUM_OUTPUTS = 5
SMALL = BackboneConfig("vit_tiny", img_size=28, patch_size=4, drop_path=0.0)
LARGE = BackboneConfig("vit_small", img_size=64, patch_size=8, drop_path=0.0)
METHODS_AT = BackboneConfig("vit_tiny", img_size=64, patch_size=8, drop_path=0.0)


AUTOCAST: torch.dtype | None = None  # sections 1 and 2 under bf16 autocast (--precision), as a run would


def autocast():
    """bf16 autocast on the CPU when ``--precision`` asks for it (the training loop's own policy:
    the forward pass under autocast, the loss in fp32), else nothing."""
    return torch.autocast("cpu", dtype=AUTOCAST) if AUTOCAST is not None else contextlib.nullcontext()


def interleaved_seconds(fns: dict, repeats: int) -> dict:
    """Median seconds of each function, timed in rounds (one call of each per round, in turn),
    so a change of the machine's load during the run hits every contender alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    out = Table(title=title)
    for i, column in enumerate(columns):
        out.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*row)
    return out


@dataclasses.dataclass
class Setup:
    """One adapted model with its optimiser and a fixed random batch."""

    model: torch.nn.Module
    method: object
    optimizer: torch.optim.Optimizer
    images: torch.Tensor
    targets: torch.Tensor

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = self.model(self.images)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), self.targets)
        loss.backward()
        self.optimizer.step()


def setup(method_name: str, backbone: BackboneConfig, batch: int, options: dict | None = None) -> Setup:
    torch.manual_seed(0)
    method = create_method(method_name, options)
    model = apply_method(create_backbone(backbone, NUM_OUTPUTS), method).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randn(batch, 3, backbone.img_size, backbone.img_size)
    targets = torch.randint(0, 2, (batch, NUM_OUTPUTS)).float()
    return Setup(model, method, optimizer, images, targets)


def training_memory(s: Setup) -> dict:
    """Bytes of weights, gradients, AdamW state (2 per trainable value) and saved activations."""
    saved = []

    def pack(tensor):
        saved.append(tensor.untyped_storage())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = s.model(s.images)
    storages = {st.data_ptr(): st.nbytes() for st in saved}  # a storage saved twice counts once
    params = {p.data_ptr(): p.numel() * p.element_size() for p in s.model.parameters()}
    activations = sum(n for ptr, n in storages.items() if ptr not in params)
    del logits
    trainable = sum(p.numel() * p.element_size() for p in s.model.parameters() if p.requires_grad)
    return {"weights": sum(params.values()), "gradients": trainable, "adam_state": 2 * trainable,
            "activations": activations}


def methods_vs_fft(console: Console, batch: int, repeats: int, names: list[str]) -> dict:
    results, setups = {}, {}
    for name in names:
        s = setups[name] = setup(name, METHODS_AT, batch)
        trainable, total = count_parameters(s.model)
        memory = training_memory(s)
        results[name] = {"trainable_share": trainable / total, "memory_bytes": memory,
                         "memory_mb": sum(memory.values()) / 2 ** 20}
    seconds = interleaved_seconds({name: s.step for name, s in setups.items()}, repeats)
    for name in names:
        results[name]["img_per_s"] = batch / seconds[name]
    fft = results["fft"]
    rows = [[name, f"{100 * r['trainable_share']:.2f}%", f"{r['img_per_s']:.0f}",
             f"{r['img_per_s'] / fft['img_per_s']:.2f}x", f"{r['memory_mb']:.0f}",
             f"{r['memory_mb'] / fft['memory_mb']:.2f}x"]
            for name, r in sorted(results.items(), key=lambda kv: -kv[1]["img_per_s"])]
    console.print(table(f"1. Training vs FFT ({METHODS_AT.name} {METHODS_AT.img_size} px / patch "
                        f"{METHODS_AT.patch_size}, batch {batch}, {torch.get_num_threads()} threads)",
                        ["method", "trainable", "img/s", "vs FFT", "train MB", "vs FFT"], rows))
    return {"backbone": dataclasses.asdict(METHODS_AT), "batch": batch, "methods": results}


def lora_vs_peft(console: Console, repeats: int, settings: list[tuple[BackboneConfig, int]]) -> dict:
    out, rows = [], []
    for backbone, batch in settings:
        steps = {name: setup(name, backbone, batch, options).step
                 for name, options in (("fft", None), ("lora", {"rank": 8}), ("lora-qkv", {"rank": 8}))}
        speeds = {name: batch / t for name, t in interleaved_seconds(steps, repeats).items()}
        where = f"{backbone.name} p{backbone.patch_size} {backbone.img_size}px b{batch}"
        out.append({"backbone": dataclasses.asdict(backbone), "batch": batch, "img_per_s": speeds})
        rows.append([where, f"{speeds['fft']:.0f}", f"{speeds['lora']:.0f}", f"{speeds['lora-qkv']:.0f}",
                     f"{speeds['lora'] / speeds['lora-qkv']:.2f}x", f"{speeds['lora'] / speeds['fft']:.2f}x"])
    console.print(table("2. LoRA r=8, training img/s: medpeft (q, v slices of qkv) vs HF peft (whole qkv) vs FFT",
                        ["setting", "FFT", "medpeft lora", "peft lora-qkv", "medpeft/peft", "medpeft/FFT"], rows))
    return {"settings": out}


def feature_cache(console: Console, repeats: int, n: int, backbone: BackboneConfig, batch: int) -> dict:
    images = torch.randn(n, 3, backbone.img_size, backbone.img_size, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 2, (n, NUM_OUTPUTS), generator=torch.Generator().manual_seed(1)).float()
    data = torch.utils.data.TensorDataset(images, targets)
    results, rows = {}, []
    for name, options in (("linear", None), ("partial-k", {"k": 1})):
        s = setup(name, backbone, batch, options)
        plan = plan_cache(s.model, deterministic_inputs=None)
        suffix = FrozenSuffix(s.model, plan.start, plan.pooled)
        start = time.perf_counter()
        cached = cache_features(suffix, data, batch_size=256, device="cpu")
        caching = time.perf_counter() - start

        def epoch(net, inputs):
            for i in range(0, n, batch):
                s.optimizer.zero_grad(set_to_none=True)
                logits = net(inputs[i:i + batch])
                torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[i:i + batch]).backward()
                s.optimizer.step()

        seconds = interleaved_seconds({"uncached": lambda: epoch(s.model, images),
                                       "cached": lambda: epoch(suffix, cached.tensors[0])}, repeats)
        uncached_s, cached_s = seconds["uncached"], seconds["cached"]
        results[name] = {"uncached_epoch_s": uncached_s, "cached_epoch_s": cached_s, "caching_s": caching,
                         "cached_blocks": plan.start, "pooled": plan.pooled}
        rows.append([name, f"{uncached_s:.2f}", f"{cached_s:.3f}", f"{uncached_s / cached_s:.1f}x", f"{caching:.2f}"])
    console.print(table(f"3. Frozen-feature cache: one epoch of {n} images, {backbone.name} {backbone.img_size} px "
                        f"patch {backbone.patch_size}, batch {batch}",
                        ["method", "uncached s/epoch", "cached s/epoch", "speed-up", "one-off caching s"], rows))
    return {"backbone": dataclasses.asdict(backbone), "images": n, "batch": batch, "methods": results}


def inference(console: Console, repeats: int, backbone: BackboneConfig, batch: int) -> dict:
    s = setup("lora", backbone, batch, {"rank": 8})
    torch.manual_seed(1)
    plain = create_backbone(backbone, NUM_OUTPUTS).eval()
    adapted = s.model.eval()

    merged = create_backbone(backbone, NUM_OUTPUTS).eval()  # what medpeft export writes: the updates folded in
    merged.load_state_dict(s.method.unload(copy.deepcopy(adapted)).state_dict())

    def forward(model):
        return lambda: model(s.images)

    with torch.no_grad():
        seconds = interleaved_seconds({"plain": forward(plain), "adapted": forward(adapted),
                                       "merged": forward(merged)}, repeats)
    results = {name: batch / t for name, t in seconds.items()}
    rows = [[k, f"{v:.0f}", f"{v / results['plain']:.2f}x"] for k, v in results.items()]
    console.print(table(f"4. Inference img/s, LoRA r=8 on {backbone.name} {backbone.img_size} px, batch {batch}",
                        ["model", "img/s", "vs plain"], rows))
    return {"backbone": dataclasses.asdict(backbone), "batch": batch, "img_per_s": results}


def counted_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def mae_step_fn(backbone: BackboneConfig, batch: int):
    from medpeft.pretrain.config import MAEConfig
    from medpeft.pretrain.mae import build_mae

    torch.manual_seed(0)
    mae = build_mae(backbone, MAEConfig()).train()
    optimizer = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randn(batch, 3, backbone.img_size, backbone.img_size)

    def step():
        optimizer.zero_grad(set_to_none=True)
        mae(images).loss.backward()
        optimizer.step()

    return step


def flops(console: Console, repeats: int, settings: list[tuple[BackboneConfig, int]], size: int = 2048) -> dict:
    a, b = torch.randn(size, size), torch.randn(size, size)
    fns, counts = {"peak": lambda: a @ b}, {"peak": 2 * size ** 3}
    for backbone, batch in settings:
        where = f"{backbone.name} {backbone.img_size} px p{backbone.patch_size} b{batch}"
        fns[f"FFT step, {where}"] = setup("fft", backbone, batch).step
        fns[f"MAE step (mask 0.75), {where}"] = mae_step_fn(backbone, batch)
    for name, fn in fns.items():
        if name != "peak":
            counts[name] = counted_flops(fn)
    seconds = interleaved_seconds(fns, repeats)
    rates = {name: counts[name] / seconds[name] for name in fns}
    rows = [[f"fp32 matmul {size}² (peak)" if name == "peak" else name, f"{rate / 1e9:.0f}",
             f"{rate / rates['peak']:.2f}"] for name, rate in rates.items()]
    console.print(table(f"5. Achieved fp32 FLOP/s ({torch.get_num_threads()} threads; FlopCounterMode counts)",
                        ["what", "GFLOP/s", "of peak"], rows))
    return {name: {"flops": counts[name], "seconds": seconds[name], "flops_per_s": rates[name],
                   "of_peak": rates[name] / rates["peak"]} for name in fns}


def data_parallel(console: Console, n: int, backbone: BackboneConfig, batch: int) -> dict:
    """One epoch of FFT fine-tuning on one process and on two (DDP, gloo), same global batch."""
    from rich.console import Console as Quiet

    from medpeft.runtime import DataConfig, RunConfig, TrainConfig
    from medpeft.train import finetune_parallel

    config = RunConfig(data=DataConfig(spec=f"synthetic-cxr?n={n}&n_val=64&n_test=64&size={backbone.img_size}"),
                       backbone=backbone, method="fft",
                       train=TrainConfig(epochs=2, batch_size=batch, n_bootstrap=0, val_every=2))
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for nproc in (1, 2):
            metrics = finetune_parallel(config, Path(out) / str(nproc), nproc, console=Quiet(quiet=True),
                                        progress=False)
            results[nproc] = {"train_img_per_s": metrics["train_img_per_s"], "test_auroc": metrics["test"]["auroc"]}
    rows = [[f"{k} process{'es' * (k > 1)}", f"{v['train_img_per_s']:.0f}",
             f"{v['train_img_per_s'] / results[1]['train_img_per_s']:.2f}x", f"{v['test_auroc']:.4f}"]
            for k, v in results.items()]
    console.print(table(f"6. Data parallel: FFT on {backbone.name} {backbone.img_size} px, {n} images, global batch "
                        f"{batch}, {torch.get_num_threads()} torch threads shared out", ["", "train img/s", "vs 1",
                                                                                   "test AUROC"], rows))
    return {"backbone": dataclasses.asdict(backbone), "images": n, "batch": batch, "nproc": results}


def precision(console: Console) -> dict:
    chosen, why = resolve_precision(torch.device("cpu"), "auto")
    console.print(f"0. precision auto on this CPU: {chosen} ({why})")
    return {"auto": chosen, "why": why}


def compiled(console: Console, repeats: int, backbone: BackboneConfig, batch: int) -> dict:
    results, rows = {}, []
    for name, options in (("fft", None), ("lora", {"rank": 8})):
        s, c = setup(name, backbone, batch, options), setup(name, backbone, batch, options)
        c.model = torch.compile(c.model)
        start = time.perf_counter()
        c.step()
        warmup = time.perf_counter() - start
        seconds = interleaved_seconds({"eager": s.step, "compiled": c.step}, repeats)
        eager, fast = batch / seconds["eager"], batch / seconds["compiled"]
        results[f"{name}_train"] = {"eager": eager, "compiled": fast, "compile_s": warmup}
        rows.append([f"{name} training step", f"{eager:.0f}", f"{fast:.0f}", f"{fast / eager:.2f}x", f"{warmup:.0f}"])
    plain = create_backbone(backbone, NUM_OUTPUTS).eval()
    images = torch.randn(batch, 3, backbone.img_size, backbone.img_size)
    with torch.no_grad():
        fn = torch.compile(plain)
        start = time.perf_counter()
        fn(images)
        warmup = time.perf_counter() - start
        seconds = interleaved_seconds({"eager": lambda: plain(images), "compiled": lambda: fn(images)}, repeats)
        eager, fast = batch / seconds["eager"], batch / seconds["compiled"]
    results["inference"] = {"eager": eager, "compiled": fast, "compile_s": warmup}
    rows.append(["inference", f"{eager:.0f}", f"{fast:.0f}", f"{fast / eager:.2f}x", f"{warmup:.0f}"])
    console.print(table(f"8. torch.compile on CPU, {backbone.name} {backbone.img_size} px batch {batch}, img/s",
                        ["what", "eager", "compiled", "ratio", "first call s"], rows))
    return results


def data_cache(console: Console, n: int, size: int) -> dict:
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
    console.print(table(f"7. synthetic-cxr: {n} images at {size} px", ["path", "seconds", "vs generating"],
                        [["generate (no cache)", f"{generate:.3f}", "1x"],
                         ["disk cache (.npz)", f"{disk:.4f}", f"{generate / disk:.0f}x faster"],
                         ["in-process cache", f"{memory:.6f}", f"{generate / max(memory, 1e-9):.0f}x faster"]]))
    return {"images": n, "size": size, "generate_s": generate, "disk_s": disk, "memory_s": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, methods and images (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=32, help="batch of section 1")
    parser.add_argument("--json", default="runs/bench.json", help="where to save every figure")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes of compiling)")
    parser.add_argument("--only", type=lambda t: {int(v) for v in t.split(",")}, default=None,
                        help="run only these sections, e.g. 3,4,5 (the precision line always prints)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per comparison (default 7; quick 3)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                        help="training steps of sections 1 and 2 in fp32 (default), bf16 autocast, or what "
                             "--precision auto picks on this machine")
    parser.add_argument("--cache-images", type=int, default=None, help="images in section 3's epoch (default 2048)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=150)
    repeats = args.repeats or (3 if args.quick else 7)
    vit_methods = [name for name, cls in METHODS.items() if "vit" in cls.families]
    if args.quick:
        vit_methods = ["fft", "linear", "lora", "partial-k", "ssf"]
    load_before = os.getloadavg()[0]
    console.print(f"load: {load_before:.2f} (1-min average; other jobs skew absolute numbers), "
                  f"{torch.get_num_threads()} torch threads, {platform.processor() or platform.machine()}")
    started = time.perf_counter()
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
               "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
               "cpu_count": os.cpu_count(), "load_1min_before": load_before}
    results["precision"] = precision(console)
    global AUTOCAST
    steps_in = results["precision"]["auto"] if args.precision == "auto" else args.precision
    AUTOCAST = torch.bfloat16 if steps_in == "bf16" else None
    results["steps_precision"] = steps_in
    console.print(f"training steps of sections 1 and 2 in {steps_in}")
    def wanted(section: int) -> bool:
        return args.only is None or section in args.only

    if wanted(1):
        results["methods_vs_fft"] = methods_vs_fft(console, args.batch, repeats, vit_methods)
    if wanted(2):
        settings = [(SMALL, 32 if args.quick else 128)] + ([] if args.quick else [(LARGE, 64)])
        results["lora_vs_peft"] = lora_vs_peft(console, repeats, settings)
    if wanted(3):
        images = args.cache_images or (256 if args.quick else 2048)
        results["feature_cache"] = feature_cache(console, repeats, images, SMALL, 128)
    if wanted(4):
        results["inference"] = inference(console, repeats, LARGE if not args.quick else SMALL, 64)
    if wanted(5):
        results["flops"] = flops(console, repeats, [(SMALL, 128)] + ([] if args.quick else [(LARGE, 64)]))
    if wanted(6) and not args.quick:
        results["data_parallel"] = data_parallel(console, 1024, SMALL, 128)
    if wanted(7):
        results["data_cache"] = data_cache(console, n=200 if args.quick else 1000, size=64)
    if args.compile and wanted(8):
        results["compile"] = compiled(console, repeats, SMALL, 128)
    results["load_1min_after"] = os.getloadavg()[0]
    results["seconds"] = time.perf_counter() - started
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"load after: {results['load_1min_after']:.2f}; {results['seconds']:.0f} s; saved {path}")


if __name__ == "__main__":
    main()
