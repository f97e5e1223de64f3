"""The pretraining loop: the loss falls, resume is exact, NaN stops cleanly, the cache, the CLI."""
from __future__ import annotations

import shutil

import pytest
import torch

import medpeft.pretrain.pretraining as loop
from medpeft.cli import main
from medpeft.models import create_backbone, load_pretrained, read_state_dict
from medpeft.models.cache import CheckpointConflict
from medpeft.pretrain import ensure_pretrained, pretrain
from medpeft.pretrain.mae import MaskedAutoencoderViT
from medpeft.runtime import TrainingDiverged

from .conftest import TINY_DATA, tiny_backbone, tiny_config


def test_loss_falls_and_the_run_directory_is_complete(tmp_path):
    config = tiny_config(epochs=5, save_at=(2,), blr=1e-2)
    summary = pretrain(config, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in summary["history"]]
    val = [h["val_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0] and val[-1] < val[0], (losses, val)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"checkpoint-2.pth", "checkpoint-2.json", "checkpoint-5.pth", "checkpoint-5.json",
            "reconstruction.png", "config.yaml", "metrics.json", "log.txt"} <= names
    assert "checkpoint-last.pt" not in names  # removed once done (keep_checkpoint=False)
    assert summary["img_per_s"] > 0


def test_resume_after_an_interruption_ends_with_the_same_weights(tmp_path, monkeypatch):
    config = tiny_config(epochs=2)
    pretrain(config, tmp_path / "straight", progress=False)

    real, calls = loop.PretrainJob.end_epoch, []

    def interrupted(job, stats):  # killed at the end of the second epoch, before its checkpoint
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, stats)

    monkeypatch.setattr(loop.PretrainJob, "end_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(loop.PretrainJob, "end_epoch", real)
    assert (tmp_path / "resumed" / "checkpoint-last.pt").is_file()
    summary = pretrain(config, tmp_path / "resumed", resume=True, progress=False)
    assert len(summary["history"]) == 2
    straight = read_state_dict(tmp_path / "straight" / "checkpoint-2.pth")
    resumed = read_state_dict(tmp_path / "resumed" / "checkpoint-2.pth")
    for key, value in straight.items():
        assert torch.equal(resumed[key], value), key


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real, calls = MaskedAutoencoderViT.forward_loss, []

    def nan_in_second_epoch(self, images, pred, mask):
        loss = real(self, images, pred, mask)
        if self.training:
            calls.append(1)
        return loss * float("nan") if len(calls) > 3 else loss  # 3 steps per epoch

    monkeypatch.setattr(MaskedAutoencoderViT, "forward_loss", nan_in_second_epoch)
    with pytest.raises(TrainingDiverged, match="epoch 2.*last good checkpoint \\(epoch 1\\)"):
        pretrain(tiny_config(epochs=3), tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint-last.pt", weights_only=True)
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert "diverged" in (tmp_path / "run" / "log.txt").read_text()


def test_ensure_pretrained_trains_once_then_reuses_the_cache(forbid, private_cache):
    config = tiny_config(epochs=1, figure_images=0)
    path = ensure_pretrained("tiny", config, progress=False)
    assert path == private_cache / "checkpoints" / "tiny" / "checkpoint.pth" and path.is_file()
    forbid("medpeft.pretrain.ensure.pretrain", "should have reused the cached checkpoint")
    assert ensure_pretrained("tiny", config, progress=False) == path


def test_a_cached_checkpoint_made_with_another_config_is_never_replaced(private_cache):
    config = tiny_config(epochs=1, figure_images=0)
    path = ensure_pretrained("tiny", config, progress=False)
    before = path.read_bytes()
    other = tiny_config(epochs=2, figure_images=0)  # another recipe under the same name
    with pytest.raises(CheckpointConflict, match=r"'tiny'.*train\.epochs: 1 there, 2 here.*another name"):
        ensure_pretrained("tiny", other, progress=False)
    assert path.read_bytes() == before  # untouched: runs fine-tuned from it keep their meaning
    shutil.rmtree(path.parent)  # what the error says to do to remake it under this name
    assert ensure_pretrained("tiny", other, progress=False) == path and path.read_bytes() != before


def test_cli_pretrain_then_load_by_name(tmp_path, private_cache):
    out = tmp_path / "cli-run"
    code = main(["pretrain", "--data", TINY_DATA, "--backbone", "vit_tiny", "--img-size", "16",
                 "--patch-size", "4", "--timm-kwargs", "{depth: 2}", "--mask-ratio", "0.5",
                 "--decoder-dim", "32", "--decoder-depth", "1", "--decoder-heads", "2",
                 "--epochs", "2", "--save-at", "1", "--batch-size", "16", "--figure-images", "0",
                 "--out", str(out), "--name", "cli-mae", "--no-progress"])
    assert code == 0
    assert (out / "checkpoint-1.pth").is_file() and (out / "checkpoint-2.pth").is_file()
    saved = torch.load(out / "checkpoint-2.pth", weights_only=True)["config"]
    assert saved["mae"]["mask_ratio"] == 0.5 and saved["backbone"]["drop_path"] == 0.0
    report = load_pretrained(create_backbone(tiny_backbone(), 2), "cli-mae")
    assert report.missing_encoder == []
    # the name is taken by another recipe: refused before any training, the cached one untouched
    cached = private_cache / "checkpoints" / "cli-mae" / "checkpoint.pth"
    before = cached.read_bytes()
    code = main(["pretrain", "--data", TINY_DATA, "--backbone", "vit_tiny", "--img-size", "16",
                 "--patch-size", "4", "--timm-kwargs", "{depth: 2}", "--mask-ratio", "0.6",
                 "--epochs", "1", "--out", str(tmp_path / "other"), "--name", "cli-mae", "--no-progress"])
    assert code == 2 and not (tmp_path / "other").exists() and cached.read_bytes() == before
