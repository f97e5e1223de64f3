"""Re-scoring a finished run on its own data, on another dataset with the same labels, and the
refusal of a dataset whose outputs differ (``medpeft eval RUN --data SPEC``)."""
from __future__ import annotations

import pytest
from rich.console import Console

from medpeft.cli import main
from medpeft.eval import evaluate_run
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
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
        method="lora", train=TrainConfig(epochs=1, batch_size=32, n_bootstrap=0))
    path = tmp_path_factory.mktemp("eval") / "run"
    metrics = finetune(config, path, console=Console(quiet=True), progress=False)
    return path, metrics


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
    assert other["auroc"] != evaluate_run(path, n_bootstrap=0)["auroc"]
    assert evaluate_run(path, data_spec=OTHER, split="val", n_bootstrap=0)["n"] == 24
    with_ci = evaluate_run(path, data_spec=OTHER, n_bootstrap=50)
    assert with_ci["auroc"] == other["auroc"] and len(with_ci["auroc_ci95"]) == 2


def test_a_dataset_with_another_number_of_outputs_is_refused(run, tmp_path, capsys):
    path, _ = run
    write_class_folders(tmp_path / "binary", {"normal": 10, "pneumonia": 10})
    spec = f"folder:{tmp_path / 'binary'}?val=0.2&test=0.2"
    with pytest.raises(ValueError, match=r"predicts 5 output\(s\) .* but folder:.* has 1 \['pneumonia'\]"):
        evaluate_run(path, data_spec=spec, n_bootstrap=0)
    assert main(["eval", str(path), "--data", spec, "--n-bootstrap", "0"]) == 2
    assert "predicts 5 output(s)" in " ".join(capsys.readouterr().out.split())


def test_a_dataset_with_another_task_and_labels_is_refused(run, tmp_path):
    """A 5-label multilabel run on a 5-class multiclass dataset: same width, other labels and task."""
    path, _ = run
    write_class_folders(tmp_path / "five", {f"class{i}": 6 for i in range(5)})
    with pytest.raises(ValueError, match=r"predicts 5 output\(s\) \['nodule'.* but folder:.* has 5 \['class0'"):
        evaluate_run(path, data_spec=f"folder:{tmp_path / 'five'}?val=0.2&test=0.2", n_bootstrap=0)
