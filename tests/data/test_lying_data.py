"""Data that lies (issue 27, item 2): one image in two splits, one path with two labels, duplicate
rows, MedMNIST's own cross-split duplicates, and a validation split with one class."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from medpeft.data import DataError, DatasetInfo, load_dataset
from medpeft.data.summary import describe, split_table
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
from medpeft.train import finetune
from medpeft.train.finetuning import selection

from ..runs import VIT16
from ..train.tiny import QUIET


def images(root, count: int, size: int = 16, seed: int = 0) -> list[str]:
    """``count`` distinct grey noise PNGs in ``root``; their names."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / f"{i:03d}.png")
        names.append(f"{i:03d}.png")
    return names


def write_table(path, rows: list[tuple[str, object, str]]):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return path


def table_rows(names: list[str]) -> list[tuple[str, object, str]]:
    """24 train, 8 val, 8 test rows, both classes in every split."""
    splits = ["train"] * 24 + ["val"] * 8 + ["test"] * 8
    return [(name, i % 2, split) for i, (name, split) in enumerate(zip(names, splits))]


def test_a_training_image_listed_again_as_test_is_an_error_naming_both_rows(tmp_path):
    names = images(tmp_path, 40)
    rows = table_rows(names) + [(names[i], i % 2, "test") for i in range(3)]  # train rows 2-4 again
    table = write_table(tmp_path / "data.csv", rows)
    with pytest.raises(DataError) as caught:
        load_dataset(f"csv:{table}")
    message = str(caught.value)
    assert "3 image(s) of test are listed in train too" in message
    assert f"000.png: train at {table}:2 and test at {table}:42" in message
    assert "--allow-overlap" in message
    with pytest.warns(UserWarning, match="3 image.s. of test are listed in train too .--allow-overlap."):
        splits = load_dataset(f"csv:{table}", allow_overlap=True)
    assert splits.info.split_sizes == {"train": 24, "val": 8, "test": 11}
    assert splits.duplicates.path_across == {"train/test": 3}


def test_a_file_copied_under_another_name_into_another_split_is_an_error_naming_both(tmp_path):
    """A training image saved again under a new name as a test image: the same file bytes."""
    names = images(tmp_path / "img", 40)
    (tmp_path / "img" / "copy.png").write_bytes((tmp_path / "img" / "001.png").read_bytes())
    table = write_table(tmp_path / "data.csv", table_rows(names) + [("copy.png", 1, "test")])
    spec = f"csv:{table}?root={tmp_path / 'img'}"
    with pytest.raises(DataError) as caught:
        load_dataset(spec)
    message = str(caught.value)
    assert "1 image(s) of test have the same file bytes as an image of train" in message
    assert f"test {tmp_path / 'img' / 'copy.png'} (listed at {table}:42)" in message
    assert f"train {tmp_path / 'img' / '001.png'} (listed at {table}:3)" in message
    assert "--allow-overlap" in message
    with pytest.warns(UserWarning, match=r"1 image\(s\) of test have the same file bytes as an image of "
                                         r"train \(--allow-overlap\)") as caught:
        splits = load_dataset(spec, allow_overlap=True)
    assert "copy.png" in str(caught[0].message) and "001.png" in str(caught[0].message)
    assert splits.duplicates.pixels_across == {"train/test": 1}
    assert splits.duplicates.content == "file bytes"
    assert splits.info.split_sizes == {"train": 24, "val": 8, "test": 9}


def test_a_re_encoded_copy_in_another_split_is_found_by_its_pixels(tmp_path):
    names = images(tmp_path / "img", 40)
    # train image 000 re-encoded (other compression, other bytes) as a new file: the same pixels
    Image.open(tmp_path / "img" / "000.png").save(tmp_path / "img" / "copy.png", compress_level=0)
    assert (tmp_path / "img" / "copy.png").read_bytes() != (tmp_path / "img" / "000.png").read_bytes()
    table = write_table(tmp_path / "data.csv", table_rows(names) + [("copy.png", 0, "test")])
    spec = f"csv:{table}?root={tmp_path / 'img'}"
    with pytest.raises(DataError) as caught:
        load_dataset(spec, verify="decode")
    message = str(caught.value)
    assert "1 image(s) of test have the same pixels as an image of train" in message
    assert f"test {tmp_path / 'img' / 'copy.png'} (listed at {table}:42)" in message
    assert f"train {tmp_path / 'img' / '000.png'} (listed at {table}:2)" in message
    with pytest.warns(UserWarning, match=r"1 image\(s\) of test have the same pixels as an image of train "
                                         r"\(--allow-overlap\)"):
        splits = load_dataset(spec, verify="decode", allow_overlap=True)
    assert splits.duplicates.pixels_across == {"train/test": 1}
    assert splits.duplicates.content == "pixels"
    # at the default verify level only bytes are compared (of files of equal size): a re-encoded copy passes
    splits = load_dataset(spec)
    assert splits.duplicates.pixels_across == {}


def test_array_sources_with_the_same_pixels_in_two_splits_are_an_error(tmp_path):
    from medpeft.data.base import ArrayImages
    from medpeft.data.duplicates import Member, find_duplicates

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)
    test = np.concatenate([rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), train[3:4]])
    members = [Member("train", "train", ArrayImages(train, "x"), np.zeros((10, 1), np.int64)),
               Member("test", "test", ArrayImages(test, "x"), np.zeros((5, 1), np.int64))]
    with pytest.raises(DataError, match=r"1 image\(s\) of test have the same pixels as an image of train.*"
                                        r"test\[4\] = train\[3\]"):
        find_duplicates(members, context="arrays")
    with pytest.warns(UserWarning, match="--allow-overlap"):
        found = find_duplicates(members, allow_overlap=True, context="arrays")
    assert found.pixels_across == {"train/test": 1}


def test_one_path_with_two_labels_is_an_error_naming_both_rows(tmp_path):
    names = images(tmp_path, 40)
    rows = table_rows(names)
    rows.insert(5, (names[0], 1, "train"))  # 000.png is label 0 on line 2, label 1 on line 7
    table = write_table(tmp_path / "data.csv", rows)
    with pytest.raises(DataError) as caught:
        load_dataset(f"csv:{table}", allow_overlap=True)
    message = str(caught.value)
    assert "000.png is listed twice with different labels" in message
    assert f"label 0 at {table}:2" in message and f"label 1 at {table}:7" in message


def test_one_path_twice_with_the_same_label_is_a_duplicate_row_warning(tmp_path):
    names = images(tmp_path, 40)
    rows = table_rows(names)
    rows.insert(5, (names[0], 0, "train"))
    table = write_table(tmp_path / "data.csv", rows)
    with pytest.warns(UserWarning, match=r"1 duplicate row\(s\).*000.png at .*:2 and .*:7"):
        splits = load_dataset(f"csv:{table}")
    assert splits.info.split_sizes["train"] == 25
    assert splits.duplicates.path_within == {"train": 1}
    assert "duplicates: 1 repeated path(s) in train" in describe(splits)
    assert "repeated path in split,1,0,0" in split_table(splits, duplicates=True).to_csv()
    assert "repeated path" not in split_table(splits).to_csv()  # only data info shows them


def test_medmnist_cross_split_duplicates_are_a_counted_warning():
    with pytest.warns(UserWarning, match=r"8 image\(s\) of val have the same pixels as an image of train "
                                         r"\(as in the official MedMNIST files"):
        splits = load_dataset("medmnist:pneumoniamnist")
    found = splits.duplicates
    assert found.pixels_across == {"train/val": 8}
    assert found.pixels_within == {"train": 18, "test": 3}
    with pytest.warns(UserWarning, match=r"1 image\(s\) of test .* 1 of them with another label"):
        breast = load_dataset("medmnist:breastmnist")
    assert breast.duplicates.pixels_across == {"train/test": 1}


def test_selection_falls_back_to_loss_only_where_no_auroc_exists():
    binary = DatasetInfo("b", "binary", ("normal", "pneumonia"), {}, 1)
    assert selection(np.array([[0], [1]]), binary) == ("auroc", "")
    mode, why = selection(np.zeros((5, 1), np.int64), binary)
    assert mode == "loss" and "pneumonia (no positives)" in why and "lowest validation loss" in why
    multi = DatasetInfo("m", "multiclass", ("a", "b", "c"), {}, 1)
    assert selection(np.array([[2], [2]]), multi)[0] == "loss"
    mode, why = selection(np.array([[0], [2]]), multi)
    assert mode == "auroc" and "left out" in why
    findings = DatasetInfo("f", "multilabel", ("x", "y"), {}, 1)
    mode, why = selection(np.array([[1, 0], [0, 0]]), findings)
    assert mode == "auroc" and "y (no positives)" in why and "left out" in why
    assert selection(np.array([[1, 0], [1, 0]]), findings)[0] == "loss"


def test_a_one_class_validation_split_chooses_the_epoch_by_validation_loss(tmp_path):
    names = images(tmp_path / "img", 40)
    rows = [(name, i % 2 if split != "val" else 0, split) for i, (name, _, split) in enumerate(table_rows(names))]
    table = write_table(tmp_path / "data.csv", rows)
    config = RunConfig(data=DataConfig(spec=f"csv:{table}?root={tmp_path / 'img'}"), backbone=VIT16,
                       method="lora", train=TrainConfig(epochs=4, batch_size=8, n_bootstrap=0, lr=0.05))
    metrics = finetune(config, tmp_path / "run", console=QUIET, progress=False)
    history = metrics["history"]
    losses = [record["val_loss"] for record in history]
    assert all(np.isnan(record["val_auroc"]) for record in history)
    assert metrics["best_epoch"] == int(np.argmin(losses)) + 1
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "chosen by the lowest validation loss" in log
