"""Numbers that must not slip through: NaN and inf in any float flag or config, --n-bootstrap that
cannot make a CI, keys given twice in --timm-kwargs or YAML, and subgroups too small to score."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medpeft.cli import build_parser, main
from medpeft.runtime import RunConfig, subgroup_metrics
from medpeft.serialization import load_yaml

DATA = "synthetic-cxr?n=64&n_val=32&n_test=32&size=16"


@pytest.mark.parametrize("flag", ["--min-lr", "--warmup-epochs", "--weight-decay", "--mixup", "--cutmix", "--lr"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_flag_refuses_nan_and_inf(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["finetune", "--data", DATA, f"{flag}={value}"])  # = : argparse reads -inf as a flag
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected a finite number, got '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["min_lr: .nan", "weight_decay: .inf", "mixup: nan", "warmup_epochs: -.inf"])
def test_a_config_refuses_nan_and_inf(text, tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  " + text + "\n")
    with pytest.raises(ValueError, match="expected a finite number"):
        RunConfig.from_dict(load_yaml(tmp_path / "c.yaml"))


@pytest.mark.parametrize("value,ok", [("0", True), ("100", True), ("1000", True), ("1", False), ("99", False)])
def test_n_bootstrap_is_off_or_enough_for_a_ci(value, ok, tmp_path, capsys):
    argv = ["eval", "run", "--n-bootstrap", value]
    if ok:
        build_parser().parse_args(argv)
        return
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "must be 0 (no confidence interval) or at least 100" in capsys.readouterr().err
    assert main(["finetune", "--data", DATA, "--n-bootstrap", value, "--out", str(tmp_path / "r")]) == 2
    assert "n_bootstrap must be 0 (no confidence interval) or at least 100" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "r").exists()


def test_n_bootstrap_from_a_recipe_is_checked_too(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  n_bootstrap: 1\n")
    assert main(["finetune", "--data", DATA, "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "n_bootstrap must be 0 (no confidence interval) or at least 100" in " ".join(capsys.readouterr().err.split())


def test_a_key_given_twice_is_an_error_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--data", DATA, "--timm-kwargs", "{depth: 2, depth: 3}"])
    assert "found the key 'depth' twice" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("train:\n  epochs: 2\n  lr: 0.1\n  epochs: 3\n")
    with pytest.raises(ValueError, match="found the key 'epochs' twice"):
        load_yaml(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("train: {epochs: 2}\ntrain: {epochs: 3}\n")
    assert main(["finetune", "--data", DATA, "--config", str(tmp_path / "d.yaml")]) == 2
    assert "found the key 'train' twice" in capsys.readouterr().err


def test_a_subgroup_too_small_reports_its_n_and_no_auroc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (102, 1))
    labels[:2, 0] = [0, 1]
    scores = np.where(labels == 1, 0.9, 0.1)  # a perfect model: a 2-image group would get AUROC 1.0, CI [1, 1]
    groups = np.array(["tiny"] * 2 + ["big"] * 100)
    result = subgroup_metrics(scores, labels, groups, "binary", ["pos"], column="site", n_bootstrap=100)
    tiny = result["groups"]["tiny"]
    assert tiny["n"] == 2 and math.isnan(tiny["auroc"]) and "auroc_ci95" not in tiny
    assert "fewer than 10 images" in tiny["note"]
    assert result["groups"]["big"]["auroc"] == 1.0 and "auroc_gap" not in result  # one scored group: no gap


def test_a_subgroup_of_one_class_has_no_auroc_or_ci():
    labels = np.array([[0]] * 20 + [[0], [1]] * 10)
    scores = np.linspace(0, 1, 40)[:, None]
    groups = np.array(["neg"] * 20 + ["mixed"] * 20)
    result = subgroup_metrics(scores, labels, groups, "binary", ["pos"], column="site", n_bootstrap=100)
    assert math.isnan(result["groups"]["neg"]["auroc"]) and "auroc_ci95" not in result["groups"]["neg"]
    assert result["groups"]["neg"]["n"] == 20
