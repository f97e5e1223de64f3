"""How hard is ``synthetic-cxr``? Trains a small model from scratch at 1/10/100% of the training
labels and prints test macro AUROC, plus two baselines that should stay well below 1.0.

    .venv/bin/python benchmarks/synthetic_cxr_calibration.py                  # CNN, 64 px
    .venv/bin/python benchmarks/synthetic_cxr_calibration.py --model vit --size 32
    .venv/bin/python benchmarks/synthetic_cxr_calibration.py --grid docs/images/synthetic_cxr_examples.png

The numbers go into docs/data.md beside the command that made them. Each fraction trains for
the same number of optimiser steps (small subsets repeat more) and reports test AUROC at the
step with the best validation AUROC. CPU only; about 2-3 minutes per model on 2 cores.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from medpeft.data import load_dataset
from medpeft.data.transforms import build_transform
from medpeft.models import CXR_MEAN, CXR_STD


def tensors(dataset, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """A whole split as one (N, 3, size, size) tensor (small data: no loader needed)."""
    transform = build_transform(size, CXR_MEAN, CXR_STD)
    images = torch.stack([transform(dataset.images.load(i)) for i in range(len(dataset))])
    return images, dataset.labels.astype(np.float32)


def small_cnn(outputs: int) -> nn.Module:
    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.MaxPool2d(2))

    return nn.Sequential(block(3, 16), block(16, 32), block(32, 64), block(64, 64),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, outputs))


def build_model(name: str, size: int, outputs: int) -> nn.Module:
    if name == "cnn":
        return small_cnn(outputs)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=size,
                             patch_size=8 if size >= 32 else 4, num_classes=outputs, global_pool="avg")


def random_features(name: str, size: int):
    """The untrained network without its head, as a fixed feature function."""
    model = (build_model(name, size, 1)[:-1] if name == "cnn" else build_model(name, size, 0)).eval()
    return lambda images: forward_all(model, images).numpy()


@torch.no_grad()
def forward_all(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(batch) for batch in images.split(256)])


def predict(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    return forward_all(model, images).sigmoid().numpy()


def macro_auroc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, list[float]]:
    per_label = [roc_auc_score(labels[:, j], scores[:, j]) for j in range(labels.shape[1])]
    return float(np.mean(per_label)), per_label


def train(model, train_x, train_y, val_x, val_y, steps: int, eval_every: int, batch: int, seed: int):
    """AdamW + BCE for ``steps`` steps; returns the model state with the best val AUROC."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loss_fn = nn.BCEWithLogitsLoss()
    targets = torch.from_numpy(train_y)
    best, best_state = -1.0, None
    for step in range(1, steps + 1):
        model.train()
        index = torch.randint(len(train_x), (min(batch, len(train_x)),), generator=generator)
        loss = loss_fn(model(train_x[index]), targets[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % eval_every == 0 or step == steps:
            score = macro_auroc(val_y, predict(model, val_x))[0]
            if score > best:
                best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, best


def probe_per_label(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray,
                    test_y: np.ndarray, max_iter: int = 3000) -> list[float]:
    """Test AUROC of one logistic regression per finding on standardised fixed features; 0.5 for
    a finding the training labels hold only one class of (small label fractions)."""
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    scores = []
    for j in range(train_y.shape[1]):
        if train_y[:, j].min() == train_y[:, j].max():
            scores.append(0.5)
            continue
        model = LogisticRegression(max_iter=max_iter, C=0.1).fit((train_f - mean) / std, train_y[:, j])
        scores.append(roc_auc_score(test_y[:, j], model.predict_proba((test_f - mean) / std)[:, 1]))
    return scores


def linear_probe(train_x, train_y, test_x, test_y, features) -> float:
    """Macro test AUROC of :func:`probe_per_label` on ``features`` of the images."""
    return float(np.mean(probe_per_label(features(train_x), train_y, features(test_x), test_y, max_iter=2000)))


def save_grid(spec: str, path: str, count: int = 18) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = load_dataset(spec)
    names = splits.info.label_names
    columns = 6
    fig, axes = plt.subplots(count // columns, columns, figsize=(2.0 * columns, 2.25 * (count // columns)))
    for index, ax in enumerate(axes.flat):
        image, label = splits.train[index]
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=1)
        found = [n for n, v in zip(names, label.tolist()) if v] or ["no finding"]
        ax.set_title("\n".join([", ".join(found[:2]), ", ".join(found[2:])]).strip(), fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{spec}: first {count} training images and their labels", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="synthetic-cxr", help="dataset spec")
    parser.add_argument("--model", choices=("cnn", "vit"), default="cnn")
    parser.add_argument("--size", type=int, default=64, help="model input size")
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps per fraction")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", help="only save a PNG grid of examples to this path")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.grid:
        return save_grid(args.spec, args.grid)

    start = time.perf_counter()
    full = load_dataset(args.spec)
    print(f"{full.info.name}: {dict(full.info.split_sizes)}, labels {full.info.label_names}, "
          f"loaded in {time.perf_counter() - start:.1f}s")
    print("train prevalence:", np.round(full.train.labels.mean(0), 3).tolist())
    val_x, val_y = tensors(full.val, args.size)
    test_x, test_y = tensors(full.test, args.size)
    train_x, train_y = tensors(full.train, args.size)

    pixels = lambda x: torch.nn.functional.avg_pool2d(x[:, :1], 2).flatten(1).numpy()  # noqa: E731
    print(f"baseline  logistic regression on pixels (100%):     test AUROC "
          f"{linear_probe(train_x, train_y, test_x, test_y, pixels):.3f}")
    torch.manual_seed(args.seed)
    frozen = random_features(args.model, args.size)
    print(f"baseline  linear probe on random {args.model} features (100%): test AUROC "
          f"{linear_probe(train_x, train_y, test_x, test_y, frozen):.3f}")

    for fraction in args.fractions:
        splits = load_dataset(args.spec, fraction=fraction, fraction_seed=args.seed)
        x, y = tensors(splits.train, args.size)
        torch.manual_seed(args.seed)
        model = build_model(args.model, args.size, len(full.info.label_names))
        began = time.perf_counter()
        model, best_val = train(model, x, y, val_x, val_y, args.steps, eval_every=50, batch=args.batch,
                                seed=args.seed)
        test, per_label = macro_auroc(test_y, predict(model, test_x))
        detail = " ".join(f"{n}={v:.2f}" for n, v in zip(full.info.label_names, per_label))
        print(f"{args.model} {args.size}px fraction {fraction:>5}: {len(x):>5} train images, "
              f"val {best_val:.3f}, test AUROC {test:.3f} ({detail}) [{time.perf_counter() - began:.0f}s]")


if __name__ == "__main__":
    main()
