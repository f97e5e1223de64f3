"""Subgroups (csv: subgroup=<column>) stay aligned with the items through every cut of the data."""
from __future__ import annotations

import re

import numpy as np
import pytest
from rich.console import Console

from medpeft.data import DataError, load_dataset
from medpeft.data.summary import describe, split_table, subgroup_counts

from ..image_folders import save_stamped
from .test_folder_csv import write_csv

TINY = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
SEXES = ["F", "M", "M", "F", "", "M"]  # one row without a value


@pytest.fixture
def table(tmp_path):
    """60 rows: image, dx (3 classes), sex, patient; images written, so files can be checked."""
    images = tmp_path / "images"
    images.mkdir()
    rows, expected = [], {}
    for i in range(60):
        save_stamped(images / f"{i:03d}.png", TINY)
        sex = SEXES[i % len(SEXES)]
        rows.append([f"{i:03d}.png", ["nv", "mel", "bkl"][i % 3 if i % 7 else 0], sex, f"P{i // 2}"])
        expected[str(images / f"{i:03d}.png")] = sex
    return write_csv(tmp_path / "meta.csv", ["image", "dx", "sex", "patient"], rows), images, expected


def assert_aligned(dataset, expected: dict[str, str]):
    assert dataset.subgroups is not None and dataset.subgroups.shape == (len(dataset),)
    assert dataset.subgroups.tolist() == [expected[p] for p in dataset.images.paths]


def test_subgroups_follow_splits_fractions_subsets_and_transforms(table):
    file, images, expected = table
    splits = load_dataset(f"csv:{file}?label=dx&root={images}&subgroup=sex", fraction=0.3,
                          fraction_seed=2)
    assert splits.info.subgroup == "sex"
    for name in ("train", "val", "test"):
        assert_aligned(splits.split(name), expected)
    assert len(splits.train) < splits.full_train_size  # the fraction really cut train
    picked = splits.test.subset([4, 0, 2])
    assert_aligned(picked, expected)
    assert_aligned(splits.with_transforms(lambda x: x, lambda x: x).val, expected)
    grouped = load_dataset(f"csv:{file}?label=dx&root={images}&subgroup=sex&group=patient")
    for name in ("train", "val", "test"):
        assert_aligned(grouped.split(name), expected)
    assert sum(subgroup_counts(grouped.split(s)).get("", 0) for s in ("train", "val", "test")) == 10


def test_subgroups_stay_aligned_when_bad_items_are_left_out(table):
    file, images, expected = table
    (images / "007.png").unlink()
    (images / "013.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 2 bad item"):
        splits = load_dataset(f"csv:{file}?label=dx&root={images}&subgroup=sex", skip_bad=True)
    assert sum(len(splits.split(s)) for s in ("train", "val", "test")) == 58
    for name in ("train", "val", "test"):
        assert_aligned(splits.split(name), expected)


def test_no_subgroup_option_means_none(table):
    file, images, _ = table
    splits = load_dataset(f"csv:{file}?label=dx&root={images}")
    assert splits.info.subgroup is None and splits.train.subgroups is None
    assert subgroup_counts(splits.train) == {}
    with pytest.raises(DataError, match=r"no column 'gender' \(subgroup=\).*'sex'"):
        load_dataset(f"csv:{file}?label=dx&root={images}&subgroup=gender")


def test_data_info_shows_subgroup_counts(table):
    file, images, _ = table
    splits = load_dataset(f"csv:{file}?label=dx&root={images}&subgroup=sex&seed=4")
    console = Console(record=True, width=120)
    console.print(describe(splits))
    console.print(split_table(splits))
    text = console.export_text()
    assert "subgroups: sex (3 values, counts below)" in text
    for value, shown in (("F", "sex = F"), ("M", "sex = M"), ("", "sex = (missing)")):
        row = next(line for line in text.splitlines() if shown in line)
        numbers = [int(n) for n in re.findall(r"(\d+) \(", row)]
        assert numbers == [subgroup_counts(splits.split(s)).get(value, 0)
                           for s in ("train", "val", "test")]
    assert sum(SEXES[i % 6] == "M" for i in range(60)) == 30  # the fixture: 30 M, 20 F, 10 missing
