"""csv: label columns that hold numbers are read as numbers, consistently for every task."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data import DataError, load_dataset

from .test_folder_csv import write_csv

SPLITS = ["train", "val", "test"]


def label_table(tmp_path, labels: list[str], name="t.csv"):
    """path,label,split rows (line n + 2 holds labels[n]); images are never read (verify=none)."""
    rows = [[f"{i}.png", label, SPLITS[i % 3]] for i, label in enumerate(labels)]
    return write_csv(tmp_path / name, ["path", "label", "split"], rows)


def all_labels(splits) -> np.ndarray:
    """Labels in file order (rows were dealt to train/val/test in turn)."""
    parts = [splits.split(s).labels[:, 0] for s in SPLITS]
    out = np.empty(sum(map(len, parts)), np.int64)
    for offset, part in enumerate(parts):
        out[offset::3] = part
    return out


def test_one_and_one_point_zero_are_one_class(tmp_path):
    file = label_table(tmp_path, ["0", "1", "1.0", "0.0", "1", "01", "0", "1.0", "1"])
    splits = load_dataset(f"csv:{file}", verify="none")
    assert splits.info.task == "binary" and splits.info.label_names == ("0", "1")
    assert all_labels(splits).tolist() == [0, 1, 1, 0, 1, 1, 0, 1, 1]
    assert load_dataset(f"csv:{file}?task=binary", verify="none").info.task == "binary"


def test_numeric_multiclass_sorted_by_value(tmp_path):
    file = label_table(tmp_path, ["2.0", "10", "1", "2", "1.0", "10.0", "-1", "1e1", "2"])
    splits = load_dataset(f"csv:{file}", verify="none")
    assert splits.info.task == "multiclass" and splits.info.label_names == ("-1", "1", "2", "10")
    assert all_labels(splits).tolist() == [2, 3, 1, 2, 1, 3, 0, 3, 2]


def test_numbers_mixed_with_names_name_the_rarer_values_and_their_lines(tmp_path):
    file = label_table(tmp_path, ["0", "1", "1", "0", "1", "benign", "0", "1", "benign"])
    with pytest.raises(DataError) as err:
        load_dataset(f"csv:{file}", verify="none")
    text = str(err.value)
    assert "column 'label' mixes numbers and names" in text
    assert f"names 'benign' at {file}:7 among numbers '0', '1'" in text
    other = label_table(tmp_path, ["nv", "mel", "3", "nv", "mel", "nv"], "names.csv")
    with pytest.raises(DataError, match=f"numbers '3' at {other}:4 among names 'mel', 'nv'"):
        load_dataset(f"csv:{other}", verify="none")
    missing = label_table(tmp_path, ["0", "1", "nan", "1", "0", "1"], "nan.csv")
    with pytest.raises(DataError, match=f"names 'nan' at {missing}:4"):  # nan is no number
        load_dataset(f"csv:{missing}", verify="none")


def test_numbers_with_a_fraction_are_an_error(tmp_path):
    file = label_table(tmp_path, ["0", "1", "0.5", "1", "2.5", "0", "0.5"])
    with pytest.raises(DataError) as err:
        load_dataset(f"csv:{file}?label=label", verify="none")
    assert (f"column 'label' holds numbers that are not whole: '0.5' at {file}:4, "
            f"'2.5' at {file}:6") in str(err.value)


def test_multilabel_cells_are_numbers(tmp_path):
    rows = [[f"{i}.png", a, b, SPLITS[i % 3]] for i, (a, b) in enumerate(
        [("1.0", "0"), ("0.00", "1"), ("1", "1.00"), ("0", "0.0"), ("1e0", "0"), ("0", "1")])]
    file = write_csv(tmp_path / "m.csv", ["path", "effusion", "mass", "split"], rows)
    splits = load_dataset(f"csv:{file}?labels=effusion,mass", verify="none")
    np.testing.assert_array_equal(splits.train.labels, [[1, 0], [0, 0]])  # rows 0 and 3
    np.testing.assert_array_equal(splits.val.labels, [[0, 1], [1, 0]])  # rows 1 and 4
    np.testing.assert_array_equal(splits.test.labels, [[1, 1], [0, 1]])  # rows 2 and 5
    bad = write_csv(tmp_path / "bad.csv", ["path", "effusion", "mass", "split"],
                    rows[:3] + [["x.png", "0.5", "1", "train"]] + rows[3:])
    with pytest.raises(DataError, match=f"{bad}:5: column 'effusion' must be 0 or 1, found '0.5'"):
        load_dataset(f"csv:{bad}?labels=effusion,mass", verify="none")
