"""A pretraining checkpoint that cannot be written (a file where its folder should be, a read-only
folder, a file-size limit that stops the write half-way, as a full disk does) is one ``OSError``
naming the path, leaves no temporary file, and leaves an earlier checkpoint of that name as it was."""
from __future__ import annotations

import contextlib
import os
import resource
import signal

import pytest
import torch

from medpeft.pretrain.checkpoint import save_checkpoint

from .conftest import tiny_config
from .test_checkpoint import trained_mae

CARD = {"format": "medpeft-mae/1", "epochs": 1}


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Writes beyond ``limit`` bytes fail with EFBIG in this process (SIGXFSZ ignored), as a full disk's do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_folder_that_is_a_file_is_one_error_naming_it(tmp_path):
    config = tiny_config()
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(OSError) as caught:
        save_checkpoint(blocker / "mae" / "checkpoint-1.pth", trained_mae(config), config, 1, CARD)
    assert str(blocker) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_folder_is_one_error_naming_it(tmp_path):
    config = tiny_config()
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError) as caught:
            save_checkpoint(folder / "checkpoint-1.pth", trained_mae(config), config, 1, CARD)
        assert str(folder) in str(caught.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_write_stopped_half_way_leaves_no_temporary_file_and_the_old_checkpoint(tmp_path):
    config = tiny_config()
    model = trained_mae(config)
    path = save_checkpoint(tmp_path / "checkpoint-1.pth", model, config, 1, CARD)
    before = path.read_bytes()
    assert len(before) > 64 * 1024
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    with file_size_limit(64 * 1024), pytest.raises(OSError) as caught:  # a 64 KiB "disk"
        save_checkpoint(path, model, config, 1, CARD)
    assert caught.value.filename == str(path)
    assert leftovers(tmp_path) == []
    assert path.read_bytes() == before
    assert torch.load(path, map_location="cpu", weights_only=True)["epoch"] == 1
