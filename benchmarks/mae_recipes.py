"""MAE training-step throughput (img/s) of candidate recipes on this machine, model only.

    python benchmarks/mae_recipes.py [--steps 6] [--threads 2]

Random tensors stand in for images (data loading is measured by the real runs' img/s);
the first step is a warm-up. Check `uptime` first: other jobs on the CPU halve the numbers.
"""
from __future__ import annotations

import argparse
import time

import torch

from medpeft.models import BackboneConfig
from medpeft.pretrain import MAEConfig, build_mae

CANDIDATES = [  # (backbone, img, patch, batch, mask, decoder dim, decoder depth)
    ("vit_tiny", 28, 4, 64, 0.75, 128, 2),
    ("vit_tiny", 28, 4, 128, 0.75, 128, 2),
    ("vit_tiny", 28, 4, 256, 0.75, 128, 2),
    ("vit_tiny", 28, 4, 128, 0.6, 128, 2),
    ("vit_tiny", 28, 4, 128, 0.75, 128, 4),
    ("vit_tiny", 28, 4, 128, 0.75, 256, 2),
    ("vit_tiny", 28, 2, 128, 0.75, 128, 2),
    ("vit_tiny", 64, 8, 128, 0.75, 128, 2),
    ("vit_small", 28, 4, 128, 0.75, 128, 2),
]


def measure(backbone, img, patch, batch, mask, dim, depth, steps: int) -> float:
    torch.manual_seed(0)
    model = build_mae(BackboneConfig(backbone, img_size=img, patch_size=patch, drop_path=0.0),
                      MAEConfig(mask_ratio=mask, decoder_dim=dim, decoder_depth=depth))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images = torch.randn(batch, 3, img, img)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = model(images).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch / (sum(times[1:]) / steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| backbone | img | patch | batch | mask | decoder | img/s |\n|---|---:|---:|---:|---:|---|---:|")
    for backbone, img, patch, batch, mask, dim, depth in CANDIDATES:
        rate = measure(backbone, img, patch, batch, mask, dim, depth, args.steps)
        print(f"| {backbone} | {img} | {patch} | {batch} | {mask} | {depth} x {dim} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
