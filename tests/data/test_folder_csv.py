"""folder: and csv: sources: tasks, given and automatic (seeded, stratified) splits, bad input."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from medpeft.data import DataError, load_dataset
from medpeft.data.sources.folder import stratified_split

from ..image_folders import save_stamped
from .test_decode import write_dicom

TINY = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16


def make_class_folders(root, counts: dict[str, int], ext=".png"):
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            save_stamped(root / name / f"{name}_{i:03d}{ext}", TINY)
    return root


def split_paths(splits) -> dict[str, list[str]]:
    return {s: list(splits.split(s).images.paths) for s in ("train", "val", "test")}


# ----------------------------------------------------------------------------- folder:
def test_folder_multiclass_automatic_split_is_stratified_and_seeded(tmp_path):
    counts = {"melanoma": 20, "nevus": 40, "bcc": 10}
    root = make_class_folders(tmp_path / "skin", counts)
    (root / "nevus" / "README.txt").write_text("not an image")
    splits = load_dataset(f"folder:{root}?val=0.2&test=0.2&seed=1")
    assert splits.info.task == "multiclass"
    assert splits.info.label_names == ("bcc", "melanoma", "nevus")  # sorted
    assert splits.info.split_sizes == {"train": 42, "val": 14, "test": 14}
    for name in ("val", "test"):  # every class at its share, within one item
        per_class = np.bincount(splits.split(name).labels[:, 0], minlength=3)
        assert np.all(np.abs(per_class - 0.2 * np.array([10, 20, 40])) <= 1), per_class
    paths = split_paths(splits)
    assert len(set(sum(paths.values(), []))) == 70  # every image once, in one split
    assert split_paths(load_dataset(f"folder:{root}?val=0.2&test=0.2&seed=1")) == paths
    assert split_paths(load_dataset(f"folder:{root}?val=0.2&test=0.2&seed=2")) != paths
    image, label = splits.test[0]
    assert image.shape == (4, 4) and label.ndim == 0


def test_folder_binary_with_default_split_and_dicom(tmp_path):
    root = make_class_folders(tmp_path / "cxr", {"pneumonia": 10, "normal": 10})
    (root / "normal" / "nested").mkdir()
    write_dicom(root / "normal" / "nested" / "extra.dcm", np.eye(4, dtype=np.uint16))
    (root / ".cache").mkdir()  # hidden folders are not classes
    splits = load_dataset(f"folder:{root}", verify="decode")
    assert splits.info.task == "binary" and splits.info.label_names == ("normal", "pneumonia")
    assert sum(splits.info.split_sizes.values()) == 21
    assert splits.info.split_sizes["test"] == 4 and splits.info.split_sizes["val"] == 2  # 0.2 / 0.1
    assert set(np.unique(splits.train.labels)) == {0, 1}


def test_folder_with_split_folders(tmp_path):
    root = tmp_path / "given"
    make_class_folders(root / "train", {"a": 3, "b": 3, "c": 2})
    make_class_folders(root / "val", {"a": 1, "b": 1})  # no c in val: fine
    make_class_folders(root / "test", {"a": 1, "b": 1, "c": 1})
    splits = load_dataset(f"folder:{root}")
    assert splits.info.label_names == ("a", "b", "c")
    assert splits.info.split_sizes == {"train": 8, "val": 2, "test": 3}
    np.testing.assert_array_equal(splits.test.labels[:, 0], [0, 1, 2])
    with pytest.raises(ValueError, match="do not apply"):
        load_dataset(f"folder:{root}?val=0.2")
    make_class_folders(root / "test", {"d": 1})
    with pytest.raises(DataError, match=r"\['d'\] do not exist"):
        load_dataset(f"folder:{root}")


def test_folder_bad_layouts(tmp_path):
    partial = tmp_path / "partial"
    make_class_folders(partial / "train", {"a": 2, "b": 2})
    make_class_folders(partial / "test", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="not val/"):
        load_dataset(f"folder:{partial}")
    single = make_class_folders(tmp_path / "single", {"only": 4})
    with pytest.raises(DataError, match="at least two"):
        load_dataset(f"folder:{single}")
    empty = make_class_folders(tmp_path / "empty", {"a": 4, "b": 0})
    with pytest.raises(DataError, match="no image files"):
        load_dataset(f"folder:{empty}")
    with pytest.raises(ValueError, match="val and test"):
        load_dataset(f"folder:{single.parent / 'partial' / 'train'}?val=0.6&test=0.5")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"folder:{tmp_path / 'absent'}")


def test_stratified_split_multilabel_strata_and_tiny_sets():
    strata = np.array([0] * 50 + [1] * 10 + [-1] * 40)
    parts = stratified_split(strata, val=0.1, test=0.2, seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    assert np.sum(strata[parts["test"]] == 1) == 2
    with pytest.raises(DataError, match="too few"):
        stratified_split(np.array([0, 1]), val=0.1, test=0.2, seed=0)


# ----------------------------------------------------------------------------- csv:
def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def ham(tmp_path):
    """HAM10000-like metadata: image_id without extension, dx class column, images elsewhere."""
    images = tmp_path / "images"
    images.mkdir()
    classes = ["nv"] * 12 + ["mel"] * 6 + ["bkl"] * 6
    rows = []
    for i, dx in enumerate(classes):
        save_stamped(images / f"ISIC_{i:04d}.jpg", np.stack([TINY] * 3, -1))
        rows.append([f"HAM_{i:04d}", f"ISIC_{i:04d}", dx, ["train", "train", "val", "test"][i % 4]])
    return write_csv(tmp_path / "meta.csv", ["lesion_id", "image_id", "dx", "split"], rows), images


def test_csv_multiclass_with_split_column_ext_and_root(ham):
    file, images = ham
    splits = load_dataset(f"csv:{file}?label=dx&ext=.jpg&root={images}", verify="decode")
    assert splits.info.task == "multiclass" and splits.info.label_names == ("bkl", "mel", "nv")
    assert splits.info.split_sizes == {"train": 12, "val": 6, "test": 6}
    assert splits.info.channels == 3
    assert splits.train.images.paths[0] == str(images / "ISIC_0000.jpg")
    assert splits.train.images.origins[0] == f"{file}:2"  # line 1 is the header
    image, label = splits.val[0]
    assert image.shape == (4, 4, 3) and int(label) == 2  # ISIC_0002 is nv


def test_csv_automatic_split_is_seeded_and_stratified(ham):
    file, images = ham
    spec = f"csv:{file}?label=dx&ext=jpg&root={images}&split=lesion_id"
    with pytest.raises(DataError, match="unknown split 'HAM_0000'") as err:
        load_dataset(spec)
    assert f"{file}:2" in str(err.value)
    with open(file, newline="") as handle:
        rows = list(csv.reader(handle))
    write_csv(file, rows[0][:3], [r[:3] for r in rows[1:]])  # drop the split column
    spec = f"csv:{file}?label=dx&ext=jpg&root={images}&val=0.25&test=0.25&seed=3"
    splits = load_dataset(spec)
    assert splits.info.split_sizes == {"train": 12, "val": 6, "test": 6}
    for name in ("val", "test"):  # bkl 6, mel 6, nv 12: a quarter of each, within one
        per_class = np.bincount(splits.split(name).labels[:, 0], minlength=3)
        assert np.all(np.abs(per_class - [1.5, 1.5, 3]) <= 1), per_class
    assert split_paths(load_dataset(spec)) == split_paths(splits)
    assert split_paths(load_dataset(spec.replace("seed=3", "seed=4"))) != split_paths(splits)


def test_csv_binary_and_integer_classes(tmp_path):
    file = write_csv(tmp_path / "b.csv", ["path", "label", "split"],
                     [[f"{i}.png", ["benign", "malignant"][i % 2], ["train", "val", "test"][i % 3]]
                      for i in range(12)])
    splits = load_dataset(f"csv:{file}", verify="none")  # path and label columns by default
    assert splits.info.task == "binary" and splits.info.label_names == ("benign", "malignant")
    forced = load_dataset(f"csv:{file}?task=multiclass", verify="none")
    assert forced.info.task == "multiclass"
    grades = write_csv(tmp_path / "g.csv", ["filename", "grade", "split"],
                       [[f"{i}.png", str([2, 10, 1][i % 3]), ["train", "valid", "test"][i % 3]]
                        for i in range(9)])
    splits = load_dataset(f"csv:{grades}?label=grade", verify="none")
    assert splits.info.label_names == ("1", "2", "10")  # numeric, not alphabetical
    assert splits.train.labels[:, 0].tolist() == [1, 1, 1]  # grade 2
    with pytest.raises(DataError, match="needs two classes"):
        load_dataset(f"csv:{grades}?label=grade&task=binary", verify="none")


def test_csv_multilabel(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"img/{i}.png", *rng.integers(0, 2, 3).tolist()] for i in range(40)]
    file = write_csv(tmp_path / "m.csv", ["Image", "effusion", "mass", "nodule"], rows)
    splits = load_dataset(f"csv:{file}?labels=effusion,nodule&seed=5", verify="none")
    assert splits.info.task == "multilabel" and splits.info.label_names == ("effusion", "nodule")
    assert splits.info.split_sizes == {"train": 28, "val": 4, "test": 8}
    everything = np.concatenate([splits.split(s).labels for s in ("train", "val", "test")])
    assert everything.sum() == sum(r[1] + r[3] for r in rows)
    with pytest.raises(ValueError, match="label="):
        load_dataset(f"csv:{file}?labels=effusion&task=binary", verify="none")


def test_csv_bad_rows_name_file_and_line(tmp_path):
    header = ["path", "a", "b", "split"]
    good = [[f"{i}.png", i % 2, 1 - i % 2, ["train", "val", "test"][i % 3]] for i in range(9)]
    cases = {"missing value in column 'a'": ["x.png", "", 1, "train"],
             "unknown split 'training'": ["x.png", 0, 1, "training"],
             "must be 0 or 1, found '2'": ["x.png", 2, 1, "train"],
             "has 3 fields": ["x.png", 0, 1]}
    for problem, bad_row in cases.items():
        file = write_csv(tmp_path / "bad.csv", header, good[:4] + [bad_row] + good[4:])
        with pytest.raises(DataError, match=problem) as err:
            load_dataset(f"csv:{file}?labels=a,b", verify="none")
        assert f"{file}:6" in str(err.value)
    file = write_csv(tmp_path / "skip.csv", header, good[:4] + list(cases.values()) + good[4:])
    with pytest.warns(UserWarning, match="skipped 4 bad item") as caught:
        splits = load_dataset(f"csv:{file}?labels=a,b", verify="none", skip_bad=True)
    assert all(f"{file}:{line}" in str(caught[0].message) for line in (6, 7, 8, 9))
    assert sum(splits.info.split_sizes.values()) == 9 and len(splits.skipped) == 4


def test_csv_missing_columns_are_listed(tmp_path):
    file = write_csv(tmp_path / "c.csv", ["image_id", "dx"], [["a", "x"], ["b", "y"]])
    with pytest.raises(DataError, match=r"no column 'diagnosis'.*\['image_id', 'dx'\]"):
        load_dataset(f"csv:{file}?label=diagnosis", verify="none")
    with pytest.raises(DataError, match=r"label=<column>.*\['image_id', 'dx'\]"):
        load_dataset(f"csv:{file}", verify="none")
    other = write_csv(tmp_path / "d.csv", ["name", "dx"], [["a", "x"]])
    with pytest.raises(DataError, match=r"no image path column.*\['name', 'dx'\]"):
        load_dataset(f"csv:{other}?label=dx", verify="none")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_dataset(f"csv:{tmp_path / 'e.csv'}", verify="none")
