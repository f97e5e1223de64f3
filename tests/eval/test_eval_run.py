"""`medpeft eval` on damaged run folders and on other data: clear errors, right labels."""
from __future__ import annotations

import json
import shutil

import pytest
from rich.console import Console

from medpeft.cli import main
from medpeft.eval import evaluate_run
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
from medpeft.train import finetune

DATA = "synthetic-cxr?n=64&n_val=32&n_test=32&size=16"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "run"
    config = RunConfig(data=DataConfig(spec=DATA),
                       backbone=BackboneConfig("vit_tiny", img_size=16, patch_size=8, timm_kwargs={"depth": 1}),
                       method="lora", train=TrainConfig(epochs=1, batch_size=32, n_bootstrap=0))
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
    other = evaluate_run(run, data_spec="synthetic-cxr?n=64&n_val=32&n_test=48&size=16&seed=5", n_bootstrap=0)
    assert other["n"] == 48 and set(other["auroc_per_label"]) == {
        "nodule", "effusion", "cardiomegaly", "opacity", "pneumothorax"}


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
    from medpeft.eval import check_labels
    from medpeft.data import load_dataset
    info = load_dataset(DATA).info
    with pytest.raises(ValueError, match="the same labels in another order"):
        check_labels(swapped, info, run, DATA)
