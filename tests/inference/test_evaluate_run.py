"""Re-scoring a finished run on its own data, on another dataset with the same labels, and the
refusal of a dataset whose outputs differ (``medpeft eval RUN --data SPEC``)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn.metrics import roc_auc_score

from medpeft.cli import main
from medpeft.data import load_dataset
from medpeft.inference import evaluate_run, load_run_model
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig, load_splits, make_loader
from medpeft.train import finetune

from ..image_folders import write_class_folders

OWN = "synthetic-cxr?n=64&n_val=32&n_test=48&size=16"
OTHER = "synthetic-cxr?n=16&n_val=24&n_test=40&size=16&seed=7"  # the same five findings, other patients
FINDINGS = {"nodule", "effusion", "cardiomegaly", "opacity", "pneumothorax"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of LoRA on the tiny ViT; five multilabel outputs."""
    config = RunConfig(
        data=DataConfig(spec=OWN),
        backbone=BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 2}),
        # fp32 on every machine: the reference below forwards without autocast ("auto" may take bf16)
        method="lora", train=TrainConfig(epochs=1, batch_size=32, n_bootstrap=0, precision="fp32"))
    path = tmp_path_factory.mktemp("eval") / "run"
    metrics = finetune(config, path, console=Console(quiet=True), progress=False)
    return path, metrics


def reference_aurocs(path, spec: str, split: str = "test") -> dict[str, float]:
    """scikit-learn's AUROC per label of the saved run's probabilities on ``split`` of ``spec``,
    forwarded here batch by batch, with the labels read from the dataset itself; labels
    with one class in the split have none (medpeft's macro AUROC is the mean of the rest)."""
    model, _, config = load_run_model(path)
    assert config.train.precision == "fp32"
    dataset = load_splits(dataclasses.replace(config.data, spec=spec), config.backbone).split(split)
    with torch.no_grad():
        probabilities = torch.cat([model(images).float().sigmoid()
                                   for images, _ in make_loader(dataset, config.train, shuffle=False)]).numpy()
    labels = np.asarray(load_dataset(spec).split(split).labels).reshape(len(probabilities), -1)
    names = read_labels(path)
    return {name: roc_auc_score(labels[:, k], probabilities[:, k]) for k, name in enumerate(names)
            if 0 < labels[:, k].sum() < len(labels)}


def read_labels(path) -> list[str]:
    return json.loads((path / "adapter_config.json").read_text())["labels"]


def test_own_data_by_default_and_by_spec_give_the_runs_test_metrics(run):
    path, metrics = run
    own = evaluate_run(path, n_bootstrap=0)
    assert own["n"] == 48
    assert own["auroc"] == pytest.approx(metrics["test"]["auroc"], abs=1e-9)
    assert evaluate_run(path, data_spec=OWN, n_bootstrap=0) == own


def test_another_dataset_with_the_same_labels_is_scored_on_its_own_items(run):
    path, _ = run
    other = evaluate_run(path, data_spec=OTHER, n_bootstrap=0)
    assert other["n"] == 40 and set(other["auroc_per_label"]) <= FINDINGS
    expected = reference_aurocs(path, OTHER)
    assert len(expected) >= 3  # enough labels with both classes for the macro mean to mean something
    assert other["auroc_per_label"] == pytest.approx(expected, abs=1e-9)
    assert other["auroc"] == pytest.approx(np.mean(list(expected.values())), abs=1e-9)
    assert other["auroc"] != evaluate_run(path, n_bootstrap=0)["auroc"]
    val = evaluate_run(path, data_spec=OTHER, split="val", n_bootstrap=0)
    assert val["n"] == 24
    assert val["auroc"] == pytest.approx(np.mean(list(reference_aurocs(path, OTHER, "val").values())), abs=1e-9)
    with_ci = evaluate_run(path, data_spec=OTHER, n_bootstrap=50)
    assert with_ci["auroc"] == other["auroc"] and len(with_ci["auroc_ci95"]) == 2
    low, high = with_ci["auroc_ci95"]
    assert 0.0 <= low < high <= 1.0  # resampling 40 images moves the AUROC


def test_a_dataset_with_another_number_of_outputs_is_refused(run, tmp_path, capsys):
    path, _ = run
    write_class_folders(tmp_path / "binary", {"normal": 10, "pneumonia": 10})
    spec = f"folder:{tmp_path / 'binary'}?val=0.2&test=0.2"
    with pytest.raises(ValueError, match=r"predicts 5 output\(s\) .* but folder:.* has 1 \['pneumonia'\]"):
        evaluate_run(path, data_spec=spec, n_bootstrap=0)
    assert main(["eval", str(path), "--data", spec, "--n-bootstrap", "0"]) == 2
    assert "predicts 5 output(s)" in " ".join(capsys.readouterr().err.split())


def test_a_dataset_with_another_task_and_labels_is_refused(run, tmp_path):
    """A 5-label multilabel run on a 5-class multiclass dataset: same width, other labels and task."""
    path, _ = run
    write_class_folders(tmp_path / "five", {f"class{i}": 6 for i in range(5)})
    with pytest.raises(ValueError, match=r"predicts 5 output\(s\) \['nodule'.* but folder:.* has 5 \['class0'"):
        evaluate_run(path, data_spec=f"folder:{tmp_path / 'five'}?val=0.2&test=0.2", n_bootstrap=0)
