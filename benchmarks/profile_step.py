"""Where a training step's time goes: torch.profiler over a few steps, grouped by operator.

    .venv/bin/python benchmarks/profile_step.py lora --backbone vit_tiny --img-size 28 --patch-size 4 --batch 128
    .venv/bin/python benchmarks/profile_step.py mae --backbone vit_tiny --img-size 28 --patch-size 4 --batch 128

Prints the operators with the most self CPU time, and the share of the step spent in matrix
products (``addmm``/``mm``/``bmm``/``linear``, attention kernels) against everything else
(elementwise ops, norms, softmax, copies, the optimiser): the part that no GEMM library speeds up.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from medpeft.models import BackboneConfig

from run_all import mae_step_fn, setup  # noqa: E402  (benchmarks/ is the script's own folder)

GEMM = ("aten::addmm", "aten::mm", "aten::bmm", "aten::_scaled_dot_product", "aten::baddbmm", "mkldnn",
        "aten::convolution", "aten::_convolution", "aten::mkldnn_convolution")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", help="a medpeft method name, or mae (a pretraining step)")
    parser.add_argument("--backbone", default="vit_tiny")
    parser.add_argument("--img-size", type=int, default=28)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = BackboneConfig(args.backbone, img_size=args.img_size, patch_size=args.patch_size, drop_path=0.0)
    step = mae_step_fn(backbone, args.batch) if args.method == "mae" else setup(args.method, backbone, args.batch).step
    step()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events if e.key.startswith(GEMM))
    print(f"{args.method} on {args.backbone} {args.img_size} px patch {args.patch_size}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads: matrix products {100 * gemm / total:.0f}% of self CPU time, "
          f"everything else {100 * (total - gemm) / total:.0f}%; {total / args.steps / 1e3:.0f} ms a step")


if __name__ == "__main__":
    main()
