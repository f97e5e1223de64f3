"""MedMNIST source: real files when present, and files in the official layout written here."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data import DataError, load_dataset
from medpeft.data.sources.medmnist import FLAGS, SIZES, file_name


def write_official_npz(path, flag: str, size: int, n=(12, 4, 6), seed=0):
    """A small file with the official keys, dtypes and shapes of ``flag``."""
    task, names, channels, _ = FLAGS[flag]
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        shape = (count, size, size) if channels == 1 else (count, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if task == "multilabel":
            labels = rng.integers(0, 2, (count, len(names)), dtype=np.uint8)
            labels[0] = 1  # every finding has a positive
        else:
            classes = 2 if task == "binary" else len(names)
            labels = (np.arange(count) % classes).reshape(count, 1).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    np.savez_compressed(path, **arrays)
    return arrays


def test_real_pneumoniamnist_official_sizes(medmnist_root):
    splits = load_dataset("medmnist:pneumoniamnist", data_root=medmnist_root)
    assert splits.info.split_sizes == {"train": 4708, "val": 524, "test": 624}
    assert splits.info.task == "binary"
    assert splits.info.label_names == ("normal", "pneumonia")
    assert int(splits.train.labels.sum()) == 3494  # SOURCES.md: train [1214, 3494]
    assert int(splits.test.labels.sum()) == 390
    image, label = splits.train[0]
    assert image.shape == (28, 28) and 0.0 <= image.min() and image.max() <= 1.0
    assert label.shape == (1,) and label.dtype.is_floating_point


def test_real_breastmnist(medmnist_root):
    splits = load_dataset("medmnist:breastmnist", data_root=medmnist_root)
    assert splits.info.split_sizes == {"train": 546, "val": 78, "test": 156}
    assert int(splits.train.labels.sum()) == 399


@pytest.mark.parametrize("flag", sorted(FLAGS))
def test_every_2d_flag_reads_in_the_official_layout(tmp_path, flag):
    task, names, channels, _ = FLAGS[flag]
    arrays = write_official_npz(tmp_path / file_name(flag, 28), flag, 28)
    with pytest.warns(UserWarning, match="official"):  # sizes differ from the official ones
        splits = load_dataset(f"medmnist:{flag}", data_root=tmp_path)
    assert splits.info.task == task and splits.info.label_names == names
    assert splits.info.num_outputs == (1 if task == "binary" else len(names))
    np.testing.assert_array_equal(splits.test.labels, arrays["test_labels"].reshape(6, -1))
    image, label = splits.val[1]
    assert image.shape == ((28, 28) if channels == 1 else (28, 28, 3))
    if task == "multiclass":
        assert label.dtype.is_floating_point is False and label.ndim == 0


@pytest.mark.parametrize("size", SIZES[1:])
def test_larger_sizes_use_the_medmnist_plus_file_names(tmp_path, monkeypatch, size):
    write_official_npz(tmp_path / f"chestmnist_{size}.npz", "chestmnist", size)
    monkeypatch.setenv("MEDPEFT_DATA", str(tmp_path))
    with pytest.warns(UserWarning):
        splits = load_dataset(f"medmnist:chestmnist@{size}")
    assert splits.info.image_size == (size, size)
    assert splits.train[0][0].shape == (size, size)
    assert splits.train[0][1].shape == (14,)


def test_missing_file_says_where_it_looked_and_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("medmnist:chestmnist@64", data_root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "chestmnist_64.npz") in message and "zenodo.org" in message


def test_corrupt_file_and_wrong_keys(tmp_path):
    (tmp_path / "pneumoniamnist.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="pneumoniamnist.npz"):
        load_dataset("medmnist:pneumoniamnist", data_root=tmp_path)
    np.savez(tmp_path / "breastmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="missing arrays"):
        load_dataset("medmnist:breastmnist", data_root=tmp_path)


def test_empty_split_is_an_error(tmp_path):
    write_official_npz(tmp_path / "breastmnist.npz", "breastmnist", 28, n=(10, 0, 4))
    with pytest.raises(DataError, match="val split .* is empty"):
        with pytest.warns(UserWarning):
            load_dataset("medmnist:breastmnist", data_root=tmp_path)


@pytest.mark.parametrize("spec,match", [("medmnist:pneumonia", "Did you mean 'pneumoniamnist'"),
                                         ("medmnist:chestmnist@32", "size must be one of"),
                                         ("medmnist:chestmnist?x=1", "unknown option"),
                                         ("nosuchsource:abc", "unknown data source")])
def test_bad_specs(tmp_path, spec, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(spec, data_root=tmp_path)


def test_embedded_copies_need_no_data_root(tmp_path, monkeypatch):
    """PneumoniaMNIST and BreastMNIST ship with medpeft: the official files, checked by MD5."""

    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.medmnist is empty
    monkeypatch.delenv("MEDPEFT_DATA", raising=False)
    splits = load_dataset("medmnist:pneumoniamnist")
    assert [len(splits.train), len(splits.val), len(splits.test)] == [4708, 524, 624]
    assert int(splits.train.labels.sum()) == 3494  # pneumonia cases (official class counts)
    breast = load_dataset("medmnist:breastmnist")
    assert [len(breast.train), len(breast.val), len(breast.test)] == [546, 78, 156]
    with pytest.raises(DataError, match="MedMNIST file not found"):
        load_dataset("medmnist:breastmnist", data_root=str(tmp_path))  # an explicit root is obeyed


def test_a_damaged_embedded_copy_is_refused(tmp_path, monkeypatch):
    from medpeft.data.sources import medmnist as source

    damaged = tmp_path / "embedded"
    damaged.mkdir()
    data = bytearray((source.EMBEDDED / "breastmnist.npz").read_bytes())
    data[-100] ^= 0xFF
    (damaged / "breastmnist.npz").write_bytes(bytes(data))
    monkeypatch.setattr(source, "EMBEDDED", damaged)
    source.embedded_file.cache_clear()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MEDPEFT_DATA", raising=False)
    try:
        with pytest.raises(DataError, match="is damaged .*reinstall medpeft"):
            load_dataset("medmnist:breastmnist")
    finally:
        source.embedded_file.cache_clear()
