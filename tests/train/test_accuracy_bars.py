"""Accuracy bars on the PneumoniaMNIST that ships inside medpeft: never skipped, judged over seeds.

Each bar is a mean over three seeds, each seed its own stratified 10% label subset (471 images)
and its own initialisation, so a harmless change of random order moves one run, not the verdict.
Every run is also compared on its own subset with two weak references, so a run that learns
only how bright an image is fails however the bar was set:

- *brightness*: a logistic regression on each image's mean and standard deviation of pixels,
  fitted on the same training subset (scikit-learn; test AUROC 0.70-0.75 on these subsets);
- *random features*: medpeft's linear probe on a randomly initialised ViT (the ``linear`` method
  from scratch), the head-only reference of the issue that asked for these bars.

The runs (ViT-Tiny with 4 of its 12 blocks, 28 px, patch 4, batch 16, 3 epochs: 90 optimiser
steps; the bars of earlier versions used 12 blocks and batch 64, 24 steps, which stayed at the
brightness reference):

- ``fft`` from scratch must beat both references on every seed by ``MARGIN``;
- ``lora`` and ``linear`` adapt a backbone pretrained here with labels on *other* images (the
  ``fft`` recipe on the subset of ``fraction_seed=100``, saved without its head, loaded as a
  checkpoint), and must beat both references on every seed by ``MARGIN``: PEFT from a random
  ViT does not learn beyond its head (LoRA 0.68 from scratch here), so these bars test the path
  a PEFT user takes: a checkpoint loaded, a method attached, its weights trained.

Measured in fp32 at 2 torch threads on a 2-core AMD EPYC, seeds 0, 1, 2 (``-s`` prints one
line per run), test AUROC:

| run | seed 0 | seed 1 | seed 2 | mean +- std | bar |
|---|---:|---:|---:|---:|---:|
| brightness reference | 0.751 | 0.747 | 0.720 | 0.739 | |
| random features (linear, no checkpoint) | 0.732 | 0.702 | 0.744 | 0.726 | |
| fft from scratch | 0.884 | 0.897 | 0.837 | 0.873 +- 0.032 | 0.81 |
| supervised backbone (fft, subset 100) | | | | 0.864 | |
| lora on it | 0.864 | 0.861 | 0.865 | 0.863 +- 0.002 | 0.77 |
| linear on it | 0.864 | 0.863 | 0.864 | 0.864 +- 0.001 | 0.77 |

The bar of a mean of three seeds is the measured mean less three standard errors (or 3 points,
whichever is larger): fft 0.873 - 3 x 0.032 / sqrt(3). lora and linear vary little across their
seeds because they share one backbone, which is itself one draw of the fft recipe (std 0.032 on
another CPU); their bars allow three of those standard deviations, and their tighter check is the
per-seed margin over both references (at least 0.79 here). Accuracy at the validation threshold:
0.76-0.81, above the majority class (0.625) in every run. The file takes about 130 s, idle.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rich.console import Console
from safetensors.torch import load_file, save_file

from medpeft.methods._base import ADAPTER_WEIGHTS
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
from medpeft.train import finetune

from ..references import brightness_auroc

QUIET = Console(quiet=True)
PNEUMONIA = "medmnist:pneumoniamnist"
SEEDS = (0, 1, 2)
PRETRAIN_SEED = 100  # the label subset of the supervised backbone (other images than the bars')
MARGIN = 0.05  # every run beats each weak reference on its own subset by this much
MAJORITY = 390 / 624  # PneumoniaMNIST test images that are pneumonia
VIT = BackboneConfig("vit_tiny", img_size=28, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 4})

# method -> lowest allowed mean test AUROC over SEEDS (see the table above)
BARS = {"fft": 0.81, "lora": 0.77, "linear": 0.77}


def bar_config(method: str, seed: int, data_root, checkpoint: str | None = None) -> RunConfig:
    return RunConfig(
        data=DataConfig(spec=PNEUMONIA, data_root=str(data_root), fraction=0.1, fraction_seed=seed),
        backbone=dataclasses.replace(VIT, checkpoint=checkpoint),
        method=method,
        train=TrainConfig(epochs=3, batch_size=16, layer_decay=1.0, warmup_epochs=0.5, n_bootstrap=0, seed=seed,
                          precision="fp32"))  # the same arithmetic on every CPU (auto may pick bf16)


@pytest.fixture(scope="module")
def references(medmnist_root, tmp_path_factory) -> dict[int, dict[str, float]]:
    """Per seed: the brightness reference and medpeft's linear probe on random features."""
    out = {}
    for seed in SEEDS:
        probe = finetune(bar_config("linear", seed, medmnist_root),
                         tmp_path_factory.mktemp("random-probe") / "run", console=QUIET, progress=False)
        out[seed] = {"brightness": brightness_auroc(PNEUMONIA, medmnist_root, 0.1, seed),
                     "random features": probe["test"]["auroc"]}
        print(f"\nBAR reference seed {seed}: brightness {out[seed]['brightness']:.4f}, "
              f"random features {out[seed]['random features']:.4f}")
    return out


@pytest.fixture(scope="module")
def supervised_backbone(medmnist_root, tmp_path_factory) -> str:
    """The ViT fine-tuned (fft) on another 10% subset, saved as a checkpoint without its head."""
    run = tmp_path_factory.mktemp("supervised") / "run"
    metrics = finetune(bar_config("fft", PRETRAIN_SEED, medmnist_root), run, console=QUIET, progress=False)
    print(f"\nBAR supervised backbone (fft, subset {PRETRAIN_SEED}): test {metrics['test']['auroc']:.4f}")
    state = {k: v for k, v in load_file(str(run / ADAPTER_WEIGHTS)).items() if not k.startswith("head.")}
    assert len(state) > 40 and all(not k.startswith("head") for k in state)
    path = run.parent / "backbone.safetensors"
    save_file(state, str(path))
    return str(path)


@pytest.mark.parametrize("method", list(BARS))
def test_method_beats_its_bar_and_the_weak_references(method, medmnist_root, references, request, tmp_path):
    checkpoint = None if method == "fft" else request.getfixturevalue("supervised_backbone")
    aurocs = []
    for seed in SEEDS:
        metrics = finetune(bar_config(method, seed, medmnist_root, checkpoint), tmp_path / f"seed{seed}",
                           console=QUIET, progress=False)
        test = metrics["test"]
        assert metrics["steps"] == 90, metrics["steps"]  # 471 images / 16 per batch x 3 epochs
        print(f"\nBAR {method} seed {seed}: test {test['auroc']:.4f}, val {metrics['val']['auroc']:.4f}, "
              f"acc@val-threshold {test['acc_at_val_threshold']:.3f}")
        for name, reference in references[seed].items():
            assert test["auroc"] > reference + MARGIN, (
                f"{method}, seed {seed}: test AUROC {test['auroc']:.4f} is not {MARGIN} above the "
                f"{name} reference {reference:.4f} on the same subset")
        assert test["acc_at_val_threshold"] > MAJORITY, test["acc_at_val_threshold"]
        aurocs.append(test["auroc"])
    mean = float(np.mean(aurocs))
    print(f"\nBAR {method}: mean {mean:.4f} std {np.std(aurocs, ddof=1):.4f} (bar {BARS[method]})")
    assert mean > BARS[method], f"{method}: mean test AUROC {mean:.4f} over seeds {SEEDS} is below {BARS[method]}"

