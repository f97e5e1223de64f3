"""`medpeft eval` on damaged run folders and on other data: clear errors, right labels."""
from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from rich.console import Console

from medpeft.cli import main
from medpeft.inference import evaluate_run
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
from medpeft.train import finetune

from .test_evaluate_run import reference_aurocs

DATA = "synthetic-cxr?n=64&n_val=32&n_test=32&size=16"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    config = RunConfig(data=DataConfig(spec=DATA),
                       backbone=BackboneConfig("vit_tiny", img_size=16, patch_size=8, timm_kwargs={"depth": 1}),
                       # fp32 on every machine: reference_aurocs forwards without autocast ("auto" may take bf16)
                       method="lora", train=TrainConfig(epochs=1, batch_size=32, n_bootstrap=0, precision="fp32"))
    finetune(config, out, console=Console(quiet=True), progress=False)
    return out


@pytest.fixture
def copy(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_adapter_file_is_a_clear_error(copy, damage, capsys):
    weights = copy / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 3], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    with pytest.raises(ValueError, match="adapter_model.safetensors: not a readable safetensors file"):
        evaluate_run(copy, n_bootstrap=0)
    assert main(["eval", str(copy), "--n-bootstrap", "0"]) == 2
    assert "Traceback" not in capsys.readouterr().out


def test_an_invalid_adapter_config_names_the_file(copy):
    (copy / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter_config.json: not a valid adapter config"):
        evaluate_run(copy, n_bootstrap=0)


def test_other_data_with_the_same_labels_scores(run):
    """Scored on the other data's 48 test images: per label and macro, scikit-learn's AUROC of the
    run's probabilities on those images against their labels."""
    spec = "synthetic-cxr?n=64&n_val=32&n_test=48&size=16&seed=5"
    other = evaluate_run(run, data_spec=spec, n_bootstrap=0)
    assert other["n"] == 48 and set(other["auroc_per_label"]) == {
        "nodule", "effusion", "cardiomegaly", "opacity", "pneumothorax"}
    expected = reference_aurocs(run, spec)
    assert other["auroc_per_label"] == pytest.approx(expected, abs=1e-9)
    assert other["auroc"] == pytest.approx(np.mean(list(expected.values())), abs=1e-9)


def test_other_labels_or_another_order_are_refused(run, tmp_path):
    csv = tmp_path / "t.csv"
    images = tmp_path / "img"
    images.mkdir()
    from PIL import Image
    rows = ["path,split,effusion,nodule"]
    for i in range(12):
        Image.new("L", (16, 16), color=i * 10).save(images / f"{i}.png")
        rows.append(f"img/{i}.png,{['train', 'val', 'test'][i % 3]},{i % 2},{(i // 2) % 2}")
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="predicts 5 output"):
        evaluate_run(run, data_spec=f"csv:{csv}?labels=effusion,nodule", n_bootstrap=0)
    adapter = json.loads((run / "adapter_config.json").read_text())
    swapped = dict(adapter, labels=list(reversed(adapter["labels"])))
    from medpeft.inference import check_labels
    from medpeft.data import load_dataset
    info = load_dataset(DATA).info
    with pytest.raises(ValueError, match="the same labels in another order"):
        check_labels(swapped, info, run, DATA)


def test_eval_scores_at_the_runs_stored_thresholds(copy, capsys):
    from medpeft.data import load_dataset
    saved = json.loads((copy / "metrics.json").read_text())["test"]
    adapter = json.loads((copy / "adapter_config.json").read_text())
    assert adapter["thresholds"] == saved["thresholds"]
    again = evaluate_run(copy, n_bootstrap=0)
    assert again["thresholds"] == saved["thresholds"]
    assert again["acc_at_val_threshold"] == pytest.approx(saved["acc_at_val_threshold"])
    assert again["f1_macro_at_val_threshold"] == pytest.approx(saved["f1_macro_at_val_threshold"])
    # thresholds of 0 call every image positive: accuracy at them is the test split's positive share
    (copy / "adapter_config.json").write_text(json.dumps(dict(adapter, thresholds={k: 0.0 for k in adapter["labels"]})))
    at_zero = evaluate_run(copy, n_bootstrap=0)
    assert at_zero["thresholds"] == {k: 0.0 for k in adapter["labels"]}
    assert at_zero["acc_at_val_threshold"] == pytest.approx(load_dataset(DATA).test.labels.mean())
    assert at_zero["one_class_at_val_threshold"] is True
    assert at_zero["auroc"] == pytest.approx(again["auroc"]) and at_zero["acc"] == pytest.approx(again["acc"])
    assert main(["eval", str(copy), "--n-bootstrap", "0", "--format", "csv"]) == 0
    rows = dict(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows["macro-F1 (val threshold)"] == f"{100 * at_zero['f1_macro_at_val_threshold']:.2f}"
    assert rows["val threshold nodule"] == "0.0000"
    assert rows["one decision for every image"].endswith(
        "nodule, effusion, cardiomegaly, opacity, pneumothorax at the val threshold")


def test_a_run_without_stored_thresholds_gets_them_from_its_validation_split(copy):
    saved = json.loads((copy / "metrics.json").read_text())["test"]
    adapter = json.loads((copy / "adapter_config.json").read_text())
    del adapter["thresholds"]  # as written before thresholds were stored
    (copy / "adapter_config.json").write_text(json.dumps(adapter))
    again = evaluate_run(copy, n_bootstrap=0)
    assert again["thresholds"] == pytest.approx(saved["thresholds"])
    other = evaluate_run(copy, data_spec="synthetic-cxr?n=64&n_val=32&n_test=48&size=16&seed=5", n_bootstrap=0)
    assert other["thresholds"] == pytest.approx(saved["thresholds"])  # the run's own, not the other data's


def test_malformed_stored_thresholds_are_a_clear_error(copy):
    adapter = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps(dict(adapter, thresholds="high")))
    with pytest.raises(ValueError, match=r"adapter_config.json: 'thresholds' must map each label to a number"):
        evaluate_run(copy, n_bootstrap=0)
