"""splits: MED-PEFT split lists, on small folders written here and on the real lists (or their
replica on a clone without ../shared, see tests/published_splits.py)."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data import DataError, load_dataset
from medpeft.data.sources.split_lists import CHEXPERT_COMPETITION, NIH_CHESTXRAY14

from .test_decode import write_dicom, write_png

NIH_LINES = {"train_list.txt": 12, "val_list.txt": 4, "test_list.txt": 5,
             "train_1.txt": 2, "train_10.txt": 3}


@pytest.fixture(autouse=True)
def no_data_root_from_the_environment(monkeypatch):
    """$MEDPEFT_DATA would become the image root of every spec without ?root=."""
    monkeypatch.delenv("MEDPEFT_DATA", raising=False)


def write_list(path, rows, newline="\n", trailing=""):
    """rows: (relative path, labels) pairs -> a list file in MED-PEFT's format."""
    lines = [f"{image} {' '.join(map(str, labels))}{trailing}" for image, labels in rows]
    path.write_text(newline.join(lines) + newline, newline="")
    return path


@pytest.fixture
def nih(tmp_path):
    """Lists in lists/ (CRLF endings like the real NIH files) and 8x8 PNGs in images/."""
    lists, images = tmp_path / "lists", tmp_path / "images"
    lists.mkdir(), images.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for file, count in NIH_LINES.items():
        rows = []
        for i in range(count):
            name = f"{file.split('.')[0]}_{i:03d}.png"
            write_png(images / name, rng.integers(0, 256, (8, 8), dtype=np.uint8))
            rows.append((name, rng.integers(0, 2, 14)))
        write_list(lists / file, rows, newline="\r\n")
        written[file] = np.array([labels for _, labels in rows])
    return lists, images, written


@pytest.fixture
def rsna(tmp_path):
    """RSNA-style lists with DICOMs under stage_2_train_images/ and trailing spaces on lines."""
    lists, images = tmp_path / "rsna", tmp_path / "dicom"
    (images / "stage_2_train_images").mkdir(parents=True)
    lists.mkdir()
    written = 0
    for file, count in {"train_list.txt": 6, "val_list.txt": 3, "test_list.txt": 3}.items():
        rows = []
        for i in range(count):
            name = f"stage_2_train_images/{file[:4]}-{i}.dcm"
            pixels = np.full((6, 6), 100 * i, np.uint16) + np.eye(6, dtype=np.uint16)
            pixels.reshape(-1)[1 + written] += 2  # a mark of its own: no two files decode to the same pixels
            written += 1
            write_dicom(images / name, pixels)
            rows.append((name, [i % 2]))
        write_list(lists / file, rows, trailing=" ")
    return lists, images


# ----------------------------------------------------------------------------- small folders
def test_nih_style_folder(nih):
    lists, images, written = nih
    splits = load_dataset(f"splits:{lists}?root={images}")
    assert splits.info.task == "multilabel"
    assert splits.info.label_names == NIH_CHESTXRAY14
    assert splits.info.split_sizes == {"train": 12, "val": 4, "test": 5}
    assert splits.info.channels == 1
    np.testing.assert_array_equal(splits.train.labels, written["train_list.txt"])
    np.testing.assert_array_equal(splits.test.labels, written["test_list.txt"])
    image, label = splits.val[2]
    assert image.shape == (8, 8) and label.shape == (14,)
    assert splits.train.images.origins[2] == f"{lists / 'train_list.txt'}:3"


@pytest.mark.parametrize("fraction, file", [(0.01, "train_1.txt"), (0.1, "train_10.txt")])
def test_fixed_subsets_serve_1_and_10_percent(nih, fraction, file):
    lists, images, written = nih
    splits = load_dataset(f"splits:{lists}?root={images}", fraction=fraction)
    assert file in splits.subset_note
    assert len(splits.train) == NIH_LINES[file]
    np.testing.assert_array_equal(splits.train.labels, written[file])
    assert splits.full_train_size == 12 and len(splits.val) == 4  # val/test untouched


def test_other_fractions_subsample_the_full_list(nih):
    lists, images, _ = nih
    splits = load_dataset(f"splits:{lists}?root={images}", fraction=0.5)
    assert "stratified" in splits.subset_note and len(splits.train) >= 6


def test_image_root_from_data_root_and_from_the_list_folder(nih, tmp_path):
    lists, images, _ = nih
    assert len(load_dataset(f"splits:{lists}", data_root=images).train) == 12
    for file in NIH_LINES:  # images beside the lists: no root needed
        (lists / file).rename(images / file)
    assert len(load_dataset(f"splits:{images}").train) == 12


def test_rsna_style_dicoms(rsna):
    lists, images = rsna
    splits = load_dataset(f"splits:{lists}?root={images}&preset=rsna", verify="decode")
    assert splits.info.task == "binary"
    assert splits.info.label_names == ("normal", "pneumonia")
    assert splits.info.split_sizes == {"train": 6, "val": 3, "test": 3}
    np.testing.assert_array_equal(splits.train.labels[:, 0], [0, 1, 0, 1, 0, 1])
    image, label = splits.train[1]
    assert image.shape == (6, 6) and float(image.max()) == 1.0 and label.tolist() == [1.0]
    plain = load_dataset(f"splits:{lists}?root={images}")
    assert plain.info.label_names == ("negative", "positive")


def test_label_names(tmp_path):
    def lists_with(width: int):
        folder = tmp_path / f"w{width}"
        folder.mkdir(exist_ok=True)
        for file in ("train_list.txt", "val_list.txt", "test_list.txt"):
            write_list(folder / file, [(f"{file}_{i}.png", [i % 2] * width) for i in range(2)])
        return folder

    def names(spec):
        return load_dataset(spec, verify="none").info.label_names

    assert names(f"splits:{lists_with(5)}") == CHEXPERT_COMPETITION
    assert names(f"splits:{lists_with(3)}") == ("label_0", "label_1", "label_2")
    assert names(f"splits:{lists_with(3)}?names=a,b,c") == ("a", "b", "c")
    assert names(f"splits:{lists_with(1)}?names=healthy,sick") == ("healthy", "sick")
    with pytest.raises(DataError, match="names= must name"):
        names(f"splits:{tmp_path / 'w3'}?names=a,b")
    with pytest.raises(DataError, match="as the nih preset has"):
        names(f"splits:{tmp_path / 'w5'}?preset=nih")
    with pytest.raises(ValueError, match="Did you mean 'nih'"):
        names(f"splits:{tmp_path / 'w5'}?preset=nhi")


# ----------------------------------------------------------------------------- bad input
def test_missing_image_names_the_file_and_list_line(nih):
    lists, images, _ = nih
    (images / "train_list_002.png").unlink()
    with pytest.raises(DataError, match="not found") as err:
        load_dataset(f"splits:{lists}?root={images}")
    assert "train_list_002.png" in str(err.value)
    assert f"{lists / 'train_list.txt'}:3" in str(err.value)


def test_corrupt_image_found_by_decode_check(nih):
    lists, images, _ = nih
    path = images / "val_list_001.png"
    path.write_bytes(path.read_bytes()[:40])
    load_dataset(f"splits:{lists}?root={images}")  # exists: not decoded
    with pytest.raises(DataError, match="cannot decode") as err:
        load_dataset(f"splits:{lists}?root={images}", verify="decode")
    assert str(path) in str(err.value) and "val_list.txt:2" in str(err.value)


def test_wrong_column_count_names_file_and_line(nih):
    lists, images, _ = nih
    lines = (lists / "val_list.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0]  # 13 labels
    (lists / "val_list.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"expected 14 label column\(s\).*found 13") as err:
        load_dataset(f"splits:{lists}?root={images}")
    assert f"{lists / 'val_list.txt'}:2" in str(err.value)
    assert "train_list.txt:1" in str(err.value)  # where 14 came from


def test_label_other_than_0_or_1(nih):
    lists, images, _ = nih
    lines = (lists / "test_list.txt").read_text().splitlines()
    path, labels = lines[3].split(" ", 1)
    lines[3] = f"{path} 2 {labels[2:]}"  # first label 2
    (lists / "test_list.txt").write_text("\n".join(lines))
    with pytest.raises(DataError, match="0 or 1") as err:
        load_dataset(f"splits:{lists}?root={images}")
    assert "test_list.txt:4" in str(err.value)


def test_line_without_labels(nih):
    lists, images, _ = nih
    (lists / "test_list.txt").write_text("only_a_path.png\n")
    with pytest.raises(DataError, match="no labels") as err:
        load_dataset(f"splits:{lists}?root={images}")
    assert "test_list.txt:1" in str(err.value)


def test_empty_list_file(nih):
    lists, images, _ = nih
    (lists / "val_list.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="empty") as err:
        load_dataset(f"splits:{lists}?root={images}")
    assert "val_list.txt" in str(err.value)


def test_folder_without_lists(tmp_path):
    with pytest.raises(DataError, match="no split lists"):
        load_dataset(f"splits:{tmp_path}")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"splits:{tmp_path / 'absent'}")


def test_skip_bad_keeps_good_items_and_lists_the_rest(nih):
    lists, images, written = nih
    lines = (lists / "train_list.txt").read_text().splitlines()
    lines[4] = lines[4] + " 1"  # 15 labels
    (lists / "train_list.txt").write_text("\n".join(lines))
    (images / "train_list_007.png").unlink()
    with pytest.warns(UserWarning) as caught:
        splits = load_dataset(f"splits:{lists}?root={images}", skip_bad=True)
    message = "\n".join(str(w.message) for w in caught)
    assert "train_list.txt:5" in message and "train_list_007.png" in message
    assert len(splits.train) == 10 and len(splits.skipped) == 2
    keep = [i for i in range(12) if i not in (4, 7)]
    np.testing.assert_array_equal(splits.train.labels, written["train_list.txt"][keep])


# ----------------------------------------------------------------------------- real lists
# ``splits_root`` is ../shared/data/splits, or (outside CI, when it is absent) a replica with its
# layout, line counts and the published label totals asserted below (tests/published_splits.py).
@pytest.mark.parametrize("folder, sizes, fixed", [
    ("NIH_ChestX-ray", {"train": 78468, "val": 11219, "test": 22433}, (785, 7847)),
    ("RSNA_Pneumonia", {"train": 25184, "val": 1500, "test": 3000}, (251, 2518)),
    ("CheXpert", {"val": 234, "test": 668}, (2234, 22341)),
])
def test_real_lists_parse(splits_root, folder, sizes, fixed):
    splits = load_dataset(f"splits:{splits_root / folder}", verify="none", fraction=0.01)
    assert splits.info.split_sizes == sizes
    assert len(splits.train) == fixed[0]
    tenth = load_dataset(f"splits:{splits_root / folder}", verify="none", fraction=0.1)
    assert len(tenth.train) == fixed[1]
    assert splits.info.task == ("binary" if folder.startswith("RSNA") else "multilabel")


def test_real_nih_and_chexpert_names(splits_root):
    nih = load_dataset(f"splits:{splits_root / 'NIH_ChestX-ray'}", verify="none")
    assert nih.info.label_names == NIH_CHESTXRAY14
    assert nih.test.labels.sum(axis=0)[-1] == 42  # Hernia, the rarest finding, last
    chexpert = load_dataset(f"splits:{splits_root / 'CheXpert'}", verify="none", fraction=0.1)
    assert chexpert.info.label_names == CHEXPERT_COMPETITION
    # CheXpert's validation set: 80/68/33/45/67 positives in this order
    assert chexpert.val.labels.sum(axis=0).tolist() == [80, 68, 33, 45, 67]


def test_real_chexpert_has_no_full_training_list(splits_root):
    with pytest.raises(DataError, match="no 'train' split") as err:
        load_dataset(f"splits:{splits_root / 'CheXpert'}", verify="none", fraction=1.0)
    assert "0.01" in str(err.value) and "0.1" in str(err.value) and "train_1.txt" in str(err.value)
    assert "train_list.txt not found" in str(err.value)
