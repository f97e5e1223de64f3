"""Grouped automatic splits (csv: group=, folder: group_regex=): no patient in two splits."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data import DataError, load_dataset
from medpeft.data.sources.group_split import fold_plan, group_split

from ..image_folders import save_stamped
from .test_folder_csv import write_csv

TINY = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16


def patients(n_patients=150, seed=0):
    """Per image: its patient and class; 1-4 images per patient, classes 60/30/10 %."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_patients)
    groups = np.repeat([f"P{i:03d}" for i in range(n_patients)], sizes)
    classes = np.repeat(rng.choice(3, n_patients, p=[0.6, 0.3, 0.1]), sizes)
    return groups, classes


def assert_grouped(parts: dict[str, np.ndarray], groups: np.ndarray, val=0.1, test=0.2):
    members = {name: set(groups[index]) for name, index in parts.items()}
    assert not members["train"] & members["val"]
    assert not members["train"] & members["test"] and not members["val"] & members["test"]
    assert sum(map(len, parts.values())) == len(groups)
    assert abs(len(parts["test"]) / len(groups) - test) < 0.02, len(parts["test"])
    assert abs(len(parts["val"]) / len(groups) - val) < 0.02, len(parts["val"])


def test_group_split_keeps_groups_whole_near_the_ratios_and_is_seeded():
    groups, classes = patients()
    parts = group_split(classes, groups, val=0.1, test=0.2, seed=0)
    assert_grouped(parts, groups)
    for name in ("val", "test"):  # stratified: the rare class is in every split
        assert np.isin(2, classes[parts[name]])
    again = group_split(classes, groups, val=0.1, test=0.2, seed=0)
    assert all(np.array_equal(parts[s], again[s]) for s in parts)
    other = group_split(classes, groups, val=0.1, test=0.2, seed=1)
    assert not np.array_equal(parts["test"], other["test"])
    assert_grouped(group_split(classes, groups, val=0.15, test=0.25, seed=3), groups, 0.15, 0.25)


def test_fold_plan_hits_the_fractions():
    assert fold_plan(0.1, 0.2, 1000) == (10, 2, 1)  # 10 folds: 2 test, 1 val
    assert fold_plan(0.15, 0.15, 1000) == (20, 3, 3)
    assert fold_plan(0.1, 0.2, 5) == (5, 1, 1)  # few groups: as close as whole groups allow
    with pytest.raises(DataError, match="2 group\\(s\\) are too few"):
        fold_plan(0.1, 0.2, 2)


def patient_table(tmp_path, split=False):
    groups, classes = patients()
    names = np.array(["benign", "malignant", "other"])[classes]
    header = ["image", "patient", "dx"] + (["split"] if split else [])
    rows = [[f"img{i}.png", g, c] + (["train"] if split else [])
            for i, (g, c) in enumerate(zip(groups, names))]
    return write_csv(tmp_path / "meta.csv", header, rows), groups


def test_csv_group_column(tmp_path):
    file, groups = patient_table(tmp_path)
    spec = f"csv:{file}?label=dx&group=patient"
    splits = load_dataset(spec, verify="none")
    by_path = dict(zip([f"img{i}.png" for i in range(len(groups))], groups))
    parts = {s: np.array([by_path[p.rsplit("/", 1)[1]] for p in splits.split(s).images.paths])
             for s in ("train", "val", "test")}
    members = {s: set(v) for s, v in parts.items()}
    assert not (members["train"] & members["val"] or members["train"] & members["test"]
                or members["val"] & members["test"])
    assert abs(len(splits.test) / len(groups) - 0.2) < 0.02
    assert abs(len(splits.val) / len(groups) - 0.1) < 0.02
    same = load_dataset(spec, verify="none")
    assert same.test.images.paths == splits.test.images.paths
    assert load_dataset(spec + "&seed=1", verify="none").test.images.paths != splits.test.images.paths


def test_csv_group_errors(tmp_path):
    file, _ = patient_table(tmp_path)
    with pytest.raises(DataError, match=r"no column 'subject' \(group=\).*\['image', 'patient', 'dx'\]"):
        load_dataset(f"csv:{file}?label=dx&group=subject", verify="none")
    lines = file.read_text().splitlines()
    lines[4] = lines[4].replace(lines[4].split(",")[1], "")  # row 4 has no patient
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{file}:5: missing value in column 'patient'"):
        load_dataset(f"csv:{file}?label=dx&group=patient", verify="none")
    given, _ = patient_table(tmp_path, split=True)
    with pytest.raises(ValueError, match=r"split comes from column 'split', so \['group'\] do not apply"):
        load_dataset(f"csv:{given}?label=dx&group=patient", verify="none")


def test_folder_group_regex(tmp_path):
    root = tmp_path / "cxr"
    groups, classes = patients(60, seed=2)
    for i, (group, cls) in enumerate(zip(groups, classes)):
        folder = root / ["normal", "pneumonia", "effusion"][cls]
        folder.mkdir(parents=True, exist_ok=True)
        save_stamped(folder / f"{group}_{i:04d}.png", TINY)
    save_stamped(root / "pneumonia" / "P099_9999.png", TINY)  # a patient seen in two classes
    save_stamped(root / "normal" / "P099_9998.png", TINY)
    spec = f"folder:{root}?group_regex=^(P\\d+)_"
    splits = load_dataset(spec)
    group = {s: {p.rsplit("/", 1)[1].split("_")[0] for p in splits.split(s).images.paths}
             for s in ("train", "val", "test")}
    assert not (group["train"] & group["val"] or group["train"] & group["test"]
                or group["val"] & group["test"])
    assert sum(len(splits.split(s)) for s in ("train", "val", "test")) == len(groups) + 2
    assert load_dataset(spec).test.images.paths == splits.test.images.paths
    save_stamped(root / "normal" / "scan.png", TINY)  # no patient id in the name
    with pytest.raises(DataError, match="scan.png .*does not match group_regex=\\^\\(P"):
        load_dataset(spec)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        skipped = load_dataset(spec, skip_bad=True)
    assert sum(skipped.info.split_sizes.values()) == len(groups) + 2
    with pytest.raises(ValueError, match="not a valid regular expression"):
        load_dataset(f"folder:{root}?group_regex=(P")
