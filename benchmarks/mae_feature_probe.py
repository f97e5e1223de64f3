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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medpeft.data import load_dataset
from medpeft.data.transforms import build_transform
from medpeft.models import BackboneConfig
from medpeft.models.backbones import create_backbone
from medpeft.models.checkpoint import load_pretrained
from medpeft.pretrain import PretrainConfig, PretrainDataConfig, PretrainTrainConfig, ensure_pretrained
from medpeft.pretrain.config import MAEConfig


def images(dataset, size: int) -> torch.Tensor:
    transform = build_transform(size)
    return torch.stack([transform(dataset.images.load(i)) for i in range(len(dataset))])


@torch.no_grad()
def features(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([model(batch) for batch in x.split(256)]).numpy()


def probe(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray) -> list[float]:
    """Test AUROC per finding; 0.5 for a finding with no positive (or no negative) to learn from."""
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    scores = []
    for j in range(train_y.shape[1]):
        if train_y[:, j].min() == train_y[:, j].max():
            scores.append(0.5)
            continue
        model = LogisticRegression(max_iter=3000, C=0.1).fit((train_f - mean) / std, train_y[:, j])
        scores.append(roc_auc_score(test_y[:, j], model.predict_proba((test_f - mean) / std)[:, 1]))
    return scores


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
    test = load_dataset(spec).test
    test_x = images(test, args.size)
    for init in ("mae", "random"):
        torch.manual_seed(0)
        model = create_backbone(backbone, num_classes=0)
        if init == "mae":
            load_pretrained(model, checkpoint)
        test_f = features(model, test_x)
        cells = []
        for fraction in (0.01, 0.1, 1.0):
            train = load_dataset(spec, fraction=fraction).train
            per_label = probe(features(model, images(train, args.size)), train.labels, test_f, test.labels)
            cells.append(f"{fraction:>4.0%} {np.mean(per_label):.3f} ({' '.join(f'{v:.2f}' for v in per_label)})")
        print(f"{init:>6}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
