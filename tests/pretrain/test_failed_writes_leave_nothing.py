"""Two more writes of the pretraining path fail cleanly (issue 27): the probe's figure and the
named cache's folder. A failed write names its path, leaves no temporary file or folder, and
leaves what was there before."""
from __future__ import annotations

import os

import pytest

from medpeft.models.cache import CACHE_ENV, checkpoint_dir, publish_files
from medpeft.pretrain.probe import save_probe_figure

HISTORY = [{"epoch": 10, "probe_auroc": 0.81, "heldout_loss": 0.52},
           {"epoch": 20, "probe_auroc": 0.84, "heldout_loss": 0.47}]


def test_the_probe_figure_is_written_whole_or_not_at_all(tmp_path):
    path = save_probe_figure(HISTORY, tmp_path / "probe.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError) as caught:
        save_probe_figure(HISTORY, blocker / "probe.png")
    assert "a-file" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "probe.png"]  # no .probe.*.tmp.png


def test_a_failed_publish_keeps_the_cached_folder_and_leaves_no_copy(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    first = tmp_path / "checkpoint.pth"
    first.write_bytes(b"weights v1")
    target = publish_files("my-model", {"checkpoint.pth": first})
    assert (target / "checkpoint.pth").read_bytes() == b"weights v1"
    second = tmp_path / "card.json"
    second.write_text("{}")
    with pytest.raises(FileNotFoundError):  # the second file vanished between planning and copying
        publish_files("my-model", {"card.json": second, "checkpoint.pth": tmp_path / "gone.pth"})
    assert (checkpoint_dir("my-model") / "checkpoint.pth").read_bytes() == b"weights v1"
    assert not (checkpoint_dir("my-model") / "card.json").exists()
    assert sorted(os.listdir(tmp_path / "cache" / "checkpoints")) == ["my-model"]  # no .my-model.tmp
