"""Pretraining never reads a test image, and a validation image only for the held-out loss and figure.

A ``folder:`` dataset with its own train/val/test folders makes every image a file of one
split, and a spy on ``medpeft.data.decode.read_image`` (through which every file-backed image
is decoded) records each file opened during :func:`medpeft.pretrain.pretrain`. As documented
in ``medpeft/pretrain/data.py``: training images are the input; at most ``val_images``
validation images (spread evenly over the split) give the held-out loss, and the figure
draws from the same few; test images are never touched.
"""
from __future__ import annotations

from collections import Counter

import pytest

import medpeft.data.decode as decode
from medpeft.pretrain import MAEConfig, PretrainConfig, PretrainDataConfig, PretrainTrainConfig, pretrain

from ..image_folders import write_split_folders
from .conftest import tiny_backbone

SIZES = {"train": {"a": 6, "b": 6}, "val": {"a": 3, "b": 3}, "test": {"a": 3, "b": 3}}


@pytest.fixture
def folder(tmp_path):
    files = write_split_folders(tmp_path / "data", SIZES)
    return tmp_path / "data", {split: {str(p) for p in paths} for split, paths in files.items()}


def reads_during_pretraining(monkeypatch, root, out, *, epochs: int, val_images: int, figure_images: int) -> Counter:
    real, opened = decode.read_image, Counter()

    def spy(path):
        opened[str(path)] += 1
        return real(path)

    monkeypatch.setattr(decode, "read_image", spy)
    config = PretrainConfig(
        data=PretrainDataConfig(specs=(f"folder:{root}",)), backbone=tiny_backbone(),
        mae=MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2),
        train=PretrainTrainConfig(epochs=epochs, batch_size=4, val_images=val_images,
                                  figure_images=figure_images, device="cpu"))
    pretrain(config, out, progress=False)
    return opened


def test_test_images_are_never_read_and_validation_only_for_the_held_out_loss(folder, tmp_path, monkeypatch):
    root, files = folder
    opened = reads_during_pretraining(monkeypatch, root, tmp_path / "run", epochs=2, val_images=2, figure_images=2)
    assert not set(opened) & files["test"], "pretraining read test images"
    assert set(opened) - files["train"] - files["val"] == set()
    # every training image once per epoch (plus the few that the channel probe opens)
    assert all(opened[p] >= 2 for p in files["train"])
    # 2 of the 6 validation images (the first and the last), read for the held-out loss of
    # each of the 2 epochs and once more for the figure
    val_read = {p: n for p, n in opened.items() if p in files["val"]}
    assert len(val_read) == 2 and set(val_read.values()) == {3}
    assert {p.split("/")[-1] for p in val_read} == {"a_000.png", "b_002.png"}


def test_without_held_out_images_no_validation_image_is_read(folder, tmp_path, monkeypatch):
    root, files = folder
    opened = reads_during_pretraining(monkeypatch, root, tmp_path / "run", epochs=1, val_images=0, figure_images=2)
    assert set(opened) <= files["train"]
    assert set(opened) == files["train"]
