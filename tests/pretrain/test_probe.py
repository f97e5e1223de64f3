"""The probe while pretraining: its curve, that it leaves the weights alone, the plateau stop,
its features (those fine-tuning sees), bad specs before training, and the CLI flags."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from medpeft.cli import main
from medpeft.models import create_backbone, load_pretrained, read_state_dict
from medpeft.pretrain import PretrainTrainConfig, pretrain
from medpeft.pretrain.checkpoint import PretrainedCheckpoint
from medpeft.pretrain.mae import build_mae
from medpeft.pretrain.simclr import build_simclr
from medpeft.pretrain.probe import FeatureView, ProbeTracker, fit_and_score

from .conftest import tiny_backbone, tiny_config

PROBE = "synthetic-cxr?n=48&n_val=24&n_test=8&size=16&seed=3"


def test_probe_every_epoch_writes_its_curve_and_leaves_the_weights_alone(tmp_path):
    pretrain(tiny_config(epochs=2), tmp_path / "plain", progress=False)
    summary = pretrain(tiny_config(epochs=2, probe=PROBE, probe_every=1), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    with open(run / "probe.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # one row per probe
    assert all(0.0 <= float(r["probe_auroc"]) <= 1.0 for r in rows)
    assert [float(r["heldout_loss"]) for r in rows] == pytest.approx([h["val_loss"] for h in summary["history"]])
    assert (run / "probe.png").stat().st_size > 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert [p["epoch"] for p in metrics["probe"]] == [1, 2]
    assert metrics["final_probe_auroc"] == pytest.approx(float(rows[-1]["probe_auroc"]))
    assert metrics["stopped_early"] is False and metrics["best_probe_epoch"] in (1, 2)
    assert "probe auroc" in (run / "log.txt").read_text()
    # the probe after epoch 1 changed nothing epoch 2 trained: bit-identical weights
    plain = read_state_dict(tmp_path / "plain" / "checkpoint-2.pth")
    probed = read_state_dict(run / "checkpoint-2.pth")
    assert plain.keys() == probed.keys()
    for key, value in plain.items():
        assert torch.equal(probed[key], value), key
    assert "probe" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())


def test_probe_every_k_epochs_and_after_the_last_and_a_resume_keeps_its_curve(tmp_path):
    tracker = ProbeTracker(data=None, every=2, patience=2, folder=tmp_path, batch_size=8)
    assert [e for e in range(1, 6) if tracker.due(e, 5)] == [2, 4, 5]
    tracker.restore([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.8, "probe_auroc": 0.6},
                     {"epoch": 4, "val_loss": 0.7, "probe_auroc": 0.8}])
    assert [row["epoch"] for row in tracker.history] == [2, 4] and tracker.best()["epoch"] == 4
    assert tracker.add(6, 0.8, 0.6) == ""  # one probe without improvement, patience 2
    assert "not improved for 2 probes since epoch 4" in tracker.add(8, float("nan"), 0.5)


def test_a_plateau_stops_the_run_and_the_last_epoch_is_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(ProbeTracker, "measure", lambda self, *args, **kwargs: 0.7)
    config = tiny_config(epochs=5, probe=PROBE, probe_every=1, probe_patience=1, figure_images=0)
    summary = pretrain(config, tmp_path / "run", name="tiny-plateau", progress=False)
    run = tmp_path / "run"
    assert [h["epoch"] for h in summary["history"]] == [1, 2]  # epoch 2 did not beat epoch 1
    assert summary["stopped_early"] is True and summary["best_probe_epoch"] == 1 and summary["epochs"] == 2
    assert (run / "checkpoint-2.pth").is_file() and not (run / "checkpoint-5.pth").exists()
    assert read_state_dict(run / "checkpoint-2.pth").keys() == read_state_dict(summary["cached"]).keys()
    assert "stopped early: the probe AUROC has not improved for 1 probe since epoch 1" in (run / "log.txt").read_text()
    assert PretrainedCheckpoint("tiny-plateau", config).final(run) == run / "checkpoint-2.pth"


def test_bad_probe_specs_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="probe 'no-such-source' is not a usable dataset spec"):
        PretrainTrainConfig(probe="no-such-source")
    with pytest.raises(ValueError, match="probe_patience .* --probe"):
        PretrainTrainConfig(probe_patience=2)
    with pytest.raises(ValueError, match="probe_every"):
        PretrainTrainConfig(probe=PROBE, probe_every=0)
    with pytest.raises(ValueError, match="probe 'synthetic-cxr\\?bogus=1'"):  # an option the source refuses
        pretrain(tiny_config(probe="synthetic-cxr?bogus=1"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_mae_probe_features_are_what_fine_tuning_pools(tmp_path):
    config = tiny_config().resolved()
    torch.manual_seed(0)
    mae = build_mae(config.backbone, config.mae).eval()
    torch.save({"model": mae.state_dict(), "epoch": 1, "config": config.to_dict()}, tmp_path / "mae.pth")
    finetuned = create_backbone(tiny_backbone(), num_classes=0)
    load_pretrained(finetuned, tmp_path / "mae.pth")
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ours = FeatureView(mae, config).network()(images)
        assert torch.allclose(ours, finetuned.eval()(images), atol=1e-6)


def test_simclr_probe_features_are_the_backbone_before_the_projection_head():
    config = tiny_config().resolved()
    simclr = build_simclr(config.backbone, projection_dim=8, hidden_dim=16, temperature=0.1)
    assert FeatureView(simclr, config).network() is simclr.encoder


@pytest.mark.parametrize("task,classes", [("binary", 2), ("multiclass", 3)])
def test_the_linear_probe_scores_separable_features_near_one(task, classes):
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, size=(120, 1))
    x = rng.normal(size=(120, 8)) + 3.0 * np.eye(8)[y[:, 0]]
    auroc = fit_and_score(x[:80], y[:80], x[80:], y[80:], task, 1 if task == "binary" else classes)
    assert 0.95 <= auroc <= 1.0


def test_the_probe_flags_are_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--probe ", "--probe-every", "--probe-fraction", "--probe-patience"):
        assert flag in text, flag
    assert "linear probe of the encoder" in text and "has not improved" in text
