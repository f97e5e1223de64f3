"""Are the demo's MAE features any good? A logistic-regression probe on frozen, pooled features.

MAE-pretrains the demo's small ViT (once, cached like ``make demo`` does) on unlabeled
synthetic-cxr images of other patients (seed 1), then fits one scikit-learn logistic regression
per finding on the standardised features of the labelled images at 1/10/100% of the labels and
prints test macro AUROC, against the same ViT at random initialisation. A converged probe says
what the features hold, without the fine-tuning budget in the way:

    .venv/bin/python benchmarks/mae_feature_probe.py                        # the demo's recipe
    .venv/bin/python benchmarks/mae_feature_probe.py --size 64 --patch 8    # same tokens, more pixels
    .venv/bin/python benchmarks/mae_feature_probe.py --no-norm-pix          # raw-pixel MAE target

Results are in docs/data.md ("How hard it is"). About 2.5 min per pretraining on 2 cores; the
probe itself takes seconds.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medpeft.data import load_dataset
from medpeft.models import BackboneConfig
from medpeft.models.backbones import create_backbone
from medpeft.models.checkpoint import load_pretrained
from medpeft.pretrain import PretrainConfig, PretrainDataConfig, PretrainTrainConfig, ensure_pretrained
from medpeft.pretrain.config import MAEConfig
from synthetic_cxr_calibration import forward_all, probe_per_label, tensors  # the sibling script (same folder)


def features(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return forward_all(model, x).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=12, help="MAE pretraining epochs")
    parser.add_argument("--unlabeled", type=int, default=4000, help="unlabeled pretraining images")
    parser.add_argument("--n", type=int, default=2000, help="labelled training images at 100%%")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--crop-min", type=float, default=0.2, help="random-resized-crop scale floor")
    parser.add_argument("--no-norm-pix", action="store_true", help="regress raw instead of normalised pixels")
    parser.add_argument("--blr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backbone = BackboneConfig("vit_tiny", img_size=args.size, patch_size=args.patch, drop_path=0.0,
                              timm_kwargs={"depth": args.depth})
    config = PretrainConfig(
        data=PretrainDataConfig(specs=(f"synthetic-cxr?n={args.unlabeled}&n_val=200&n_test=1&size={args.size}&seed=1",),
                                crop_scale=(args.crop_min, 1.0)),
        backbone=backbone, mae=MAEConfig(mask_ratio=args.mask_ratio, norm_pix_loss=not args.no_norm_pix),
        train=PretrainTrainConfig(epochs=args.epochs, blr=args.blr, figure_images=0))
    name = (f"probe-s{args.size}p{args.patch}d{args.depth}e{args.epochs}u{args.unlabeled}m{args.mask_ratio}"
            f"c{args.crop_min}{'raw' if args.no_norm_pix else ''}b{args.blr:g}")
    started = time.perf_counter()
    checkpoint = ensure_pretrained(name, config, progress=False)
    print(f"MAE backbone {name}: ready in {time.perf_counter() - started:.0f} s")

    spec = f"synthetic-cxr?n={args.n}&n_val=300&n_test=1000&size={args.size}"
    test_x, test_y = tensors(load_dataset(spec).test, args.size)
    for init in ("mae", "random"):
        torch.manual_seed(0)
        model = create_backbone(backbone, num_classes=0)
        if init == "mae":
            load_pretrained(model, checkpoint)
        test_f = features(model, test_x)
        cells = []
        for fraction in (0.01, 0.1, 1.0):
            train_x, train_y = tensors(load_dataset(spec, fraction=fraction).train, args.size)
            per_label = probe_per_label(features(model, train_x), train_y, test_f, test_y)
            cells.append(f"{fraction:>4.0%} {np.mean(per_label):.3f} ({' '.join(f'{v:.2f}' for v in per_label)})")
        print(f"{init:>6}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
