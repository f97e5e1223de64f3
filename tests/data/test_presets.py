"""Presets for Dutt et al.'s datasets, each on small files written in the dataset's own layout."""
from __future__ import annotations

import os

import numpy as np
import pytest

from medpeft.data import DataError, load_dataset

from ..image_folders import save_stamped
from .test_folder_csv import write_csv

RGB = np.stack([np.arange(16, dtype=np.uint8).reshape(4, 4) * 16] * 3, -1)
HAM_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def all_paths(splits) -> list[str]:
    return [p for s in ("train", "val", "test") for p in splits.split(s).images.paths]


# ----------------------------------------------------------------------------- HAM10000
@pytest.fixture
def ham10000(tmp_path):
    """HAM10000_metadata.csv + images in HAM10000_images_part_1/ and _part_2/, 1-3 per lesion."""
    root = tmp_path / "HAM10000"
    parts = [root / "HAM10000_images_part_1", root / "HAM10000_images_part_2"]
    for part in parts:
        part.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, lesion_of = [], {}
    image = 24306
    for lesion in range(56):
        dx = HAM_CLASSES[lesion % 7]
        for _ in range(rng.integers(1, 4)):
            image_id = f"ISIC_{image:07d}"
            save_stamped(parts[image % 2] / f"{image_id}.jpg", RGB)
            rows.append([f"HAM_{lesion:07d}", image_id, dx, "histo", "55.0",
                         ["male", "female"][lesion % 2], "back"])
            lesion_of[image_id] = f"HAM_{lesion:07d}"
            image += 1
    header = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    write_csv(root / "HAM10000_metadata.csv", header, rows)
    return root, lesion_of, len(rows)


def test_ham10000_preset(ham10000):
    root, lesion_of, count = ham10000
    splits = load_dataset(f"csv:{root}?preset=ham10000", verify="decode")
    assert splits.info.name == "csv:ham10000" and splits.info.task == "multiclass"
    assert splits.info.label_names == HAM_CLASSES and splits.info.channels == 3
    paths = all_paths(splits)
    assert len(paths) == count and all(os.path.isfile(p) for p in paths)
    assert {os.path.basename(os.path.dirname(p)) for p in paths} == {
        "HAM10000_images_part_1", "HAM10000_images_part_2"}  # both image folders are used
    lesions = {s: {lesion_of[os.path.basename(p)[:-4]] for p in splits.split(s).images.paths}
               for s in ("train", "val", "test")}
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"]
                or lesions["val"] & lesions["test"])  # grouped by lesion_id
    with_sex = load_dataset(f"csv:{root / 'HAM10000_metadata.csv'}?preset=ham10000&subgroup=sex")
    assert set(with_sex.train.subgroups) == {"male", "female"}  # options add to the preset's


def test_ham10000_preset_with_its_own_split_column(ham10000):
    root, _, count = ham10000
    lines = (root / "HAM10000_metadata.csv").read_text().splitlines()
    lines = [lines[0] + ",split"] + [f"{line},{['train', 'val', 'test'][i % 3]}"
                                     for i, line in enumerate(lines[1:])]
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    splits = load_dataset(f"csv:{root}?preset=ham10000")  # the preset's group= gives way
    assert splits.info.split_sizes == {"train": (count + 2) // 3, "val": (count + 1) // 3,
                                       "test": count // 3}
    with pytest.raises(ValueError, match=r"\['group'\] do not apply"):  # but a written one not
        load_dataset(f"csv:{root}?preset=ham10000&group=lesion_id")


# ----------------------------------------------------------------------------- Fitzpatrick17k
def write_fitzpatrick(root, scale_column="fitzpatrick_scale"):
    (root / "images").mkdir(parents=True)
    three = {"melanoma": "malignant", "psoriasis": "non-neoplastic", "dermatofibroma": "benign",
             "basal cell carcinoma": "malignant", "eczema": "non-neoplastic"}
    rows, skin = [], {}
    for i in range(45):
        md5 = f"{i:032x}"
        label = list(three)[i % 5]
        scale = str([1, 2, 3, 4, 5, 6, -1][i % 7])
        save_stamped(root / "images" / f"{md5}.jpg", RGB)
        rows.append([md5, scale, scale, label, "inflammatory", three[label], "",
                     f"https://example.org/{i}.jpg", f"example{i}jpg.jpg"])
        skin[md5] = scale
    header = ["md5hash", scale_column, "fitzpatrick_centaur", "label", "nine_partition_label",
              "three_partition_label", "qc", "url", "url_alphanum"]
    write_csv(root / "fitzpatrick17k.csv", header, rows)
    return skin


def test_fitzpatrick17k_preset(tmp_path):
    root = tmp_path / "fitz"
    skin = write_fitzpatrick(root)
    splits = load_dataset(f"csv:{root}?preset=fitzpatrick17k")
    assert splits.info.label_names == ("benign", "malignant", "non-neoplastic")
    assert splits.info.subgroup == "fitzpatrick_scale"
    for name in ("train", "val", "test"):
        dataset = splits.split(name)
        assert dataset.subgroups.tolist() == [skin[os.path.basename(p)[:-4]]
                                              for p in dataset.images.paths]
    assert set(np.concatenate([splits.split(s).subgroups for s in ("train", "val", "test")])) == {
        "1", "2", "3", "4", "5", "6", "-1"}
    fine = load_dataset(f"csv:{root}?preset=fitzpatrick17k&label=label")
    assert len(fine.info.label_names) == 5  # the condition names
    older = tmp_path / "older"
    write_fitzpatrick(older, scale_column="fitzpatrick")  # the first release's column name
    assert load_dataset(f"csv:{older}?preset=fitzpatrick17k").info.subgroup == "fitzpatrick"


# ----------------------------------------------------------------------------- BreastUS
def test_breastus_preset_leaves_the_masks_out(tmp_path):
    root = tmp_path / "Dataset_BUSI_with_GT"
    counts = {"benign": 14, "malignant": 9, "normal": 7}
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(1, count + 1):
            save_stamped(root / name / f"{name} ({i}).png", RGB)
            save_stamped(root / name / f"{name} ({i})_mask.png", RGB[..., 0])
            if i % 4 == 0:  # some images have a second mask
                save_stamped(root / name / f"{name} ({i})_mask_1.png", RGB[..., 0])
    splits = load_dataset(f"folder:{root}?preset=breastus")
    assert splits.info.label_names == ("benign", "malignant", "normal")
    paths = all_paths(splits)
    assert len(paths) == 30 and not any("_mask" in p for p in paths)
    per_class = np.bincount(np.concatenate([splits.split(s).labels[:, 0]
                                            for s in ("train", "val", "test")]))
    assert per_class.tolist() == [14, 9, 7]
    assert splits.notes == ["excluded 36 file(s) matching *_mask*.png (exclude=)"]
    assert len(all_paths(load_dataset(f"folder:{root}"))) == 66  # without it, masks are "images"


# ----------------------------------------------------------------------------- SMDG
def test_smdg_preset(tmp_path):
    root = tmp_path / "SMDG"
    images = root / "full-fundus" / "full-fundus"  # the Kaggle archive's nesting
    images.mkdir(parents=True)
    types = [0, 1, 0, 0, -1, 1, 0, 1, 0, 1] * 4
    rows = []
    for i, kind in enumerate(types):
        name = f"OIA-ODIR-TEST-OFFLINE-{i + 1}" if i else "G1020-v1.2"  # a dot, yet no extension
        save_stamped(images / f"{name}.png", RGB)
        rows.append([name, str(kind), "", "1", f"{1000 + i}_right.jpg", "",
                     f"/full-fundus/{name}.png", "F", "58", "OD"])
    header = ["names", "types", "type_expanded", "isColor", "original_name", "patient_id",
              "fundus", "sex", "age", "eye"]
    write_csv(root / "metadata - standardized.csv", header, rows)
    splits = load_dataset(f"csv:{root}?preset=smdg", verify="decode")
    assert splits.info.task == "binary" and splits.info.label_names == ("non-glaucoma", "glaucoma")
    assert sum(splits.info.split_sizes.values()) == 36  # the 4 suspects (-1) are dropped
    labels = np.concatenate([splits.split(s).labels[:, 0] for s in ("train", "val", "test")])
    assert labels.sum() == 16
    assert splits.notes == ["dropped 4 row(s) of metadata - standardized.csv with types in {-1} (drop=)"]
    everything = load_dataset(f"csv:{root}?preset=smdg&drop=&names=", verify="none")
    assert everything.info.label_names == ("-1", "0", "1") and not everything.notes


# ----------------------------------------------------------------------------- errors
def test_preset_errors(tmp_path, ham10000):
    root, _, _ = ham10000
    with pytest.raises(ValueError, match="unknown csv preset 'ham1000'. Did you mean 'ham10000'"):
        load_dataset(f"csv:{root}?preset=ham1000")
    with pytest.raises(DataError, match="is a folder; name the CSV file, or give preset="):
        load_dataset(f"csv:{root}")
    with pytest.raises(DataError, match="'fitzpatrick17k.csv' of the preset\\) not found"):
        load_dataset(f"csv:{root}?preset=fitzpatrick17k")
    with pytest.raises(DataError, match=r"names= must name the 7 classes .*akiec, bcc"):
        load_dataset(f"csv:{root}?preset=ham10000&names=a,b", verify="none")
    with pytest.raises(ValueError, match="unknown folder preset"):
        load_dataset(f"folder:{root}?preset=busi")
