"""Per-subgroup metrics: each subgroup's AUROC with its CI and the largest gap (the bias check
of Dutt et al.'s open question), in the runtime, in a finished run and in `medpeft eval`."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medpeft.cli import main
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig, macro_auroc, subgroup_metrics
from medpeft.train import finetune

from ..train.tiny import QUIET


def test_each_subgroup_is_scored_on_its_own_items_and_the_gap_is_the_extremes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (300, 1))
    groups = np.array(["F", "M", "X"] * 100)
    noise = {"F": 0.2, "M": 0.6, "X": 1.2}  # the model is worse on M and worst on X
    scores = np.clip(labels[:, 0] + rng.normal(0, [noise[g] for g in groups]), -3, 4)
    scores = (1 / (1 + np.exp(-scores)))[:, None]
    result = subgroup_metrics(scores, labels, groups, "binary", ["pos"], column="sex", n_bootstrap=50)
    assert result["column"] == "sex" and list(result["groups"]) == ["F", "M", "X"]
    for value in "FMX":
        index = groups == value
        assert result["groups"][value]["auroc"] == pytest.approx(macro_auroc(scores[index], labels[index], "binary"))
        assert result["groups"][value]["n"] == 100
        low, high = result["groups"][value]["auroc_ci95"]
        assert low <= result["groups"][value]["auroc"] <= high
    aurocs = {v: g["auroc"] for v, g in result["groups"].items()}
    assert aurocs["F"] > aurocs["M"] > aurocs["X"]
    assert result["auroc_gap"] == pytest.approx(aurocs["F"] - aurocs["X"])
    assert result["auroc_gap_between"] == ["X", "F"]


def test_a_missing_value_is_its_own_group_and_sizes_must_match():
    labels = np.array([[0], [1], [0], [1]])
    scores = np.array([[0.1], [0.9], [0.2], [0.8]])
    result = subgroup_metrics(scores, labels, np.array(["a", "a", "", ""]), "binary", ["pos"], column="site")
    assert set(result["groups"]) == {"a", "(missing)"}
    with pytest.raises(ValueError, match="3 values for 4 items"):
        subgroup_metrics(scores, labels, np.array(["a", "b", "c"]), "binary", ["pos"], column="site")


@pytest.fixture(scope="module")
def csv_with_sex(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sg")
    rng = np.random.default_rng(1)
    rows = ["path,label,sex,split"]
    for i in range(120):
        label = i % 2
        pixels = (rng.random((16, 16)) * 60 + 100 * label + (40 if i % 3 else 0)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{label},{'FM'[i % 3 == 0]},{['train', 'train', 'val', 'test'][(i // 2) % 4]}")
    (folder / "t.csv").write_text("\n".join(rows) + "\n")
    return f"csv:{folder / 't.csv'}?label=label&subgroup=sex"


def test_a_run_and_eval_report_per_subgroup_metrics(csv_with_sex, tmp_path, capsys):
    config = RunConfig(data=DataConfig(spec=csv_with_sex),
                       backbone=BackboneConfig("vit_tiny", img_size=16, patch_size=8, timm_kwargs={"depth": 1}),
                       method="linear", train=TrainConfig(epochs=2, batch_size=16, n_bootstrap=20))
    metrics = finetune(config, tmp_path / "run", console=QUIET, progress=False)
    groups = metrics["test"]["subgroups"]
    assert groups["column"] == "sex" and set(groups["groups"]) == {"F", "M"}
    assert sum(g["n"] for g in groups["groups"].values()) == metrics["test"]["n"] == 30
    assert "auroc_gap" in groups and "acc_at_val_threshold" in groups["groups"]["F"]
    saved = np.load(tmp_path / "run" / "predictions-test.npz")
    assert saved["subgroups"].tolist().count("M") == groups["groups"]["M"]["n"]
    assert main(["eval", str(tmp_path / "run"), "--n-bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "AUROC sex = F (n " in out and "largest AUROC gap" in out
