"""synthetic-cxr: shapes, determinism, disjoint splits, prevalences, where findings show, cache."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medpeft.data import load_dataset
from medpeft.data.sources import synthetic_cxr as cxr
from medpeft.data.sources import synthetic_cxr_cases as cxr_cases
from medpeft.data.sources import synthetic_cxr_drawing as cxr_drawing


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test caches into its own folder and starts with an empty in-process cache."""
    monkeypatch.setenv(cxr.CACHE_ENV, str(tmp_path / "cache"))
    cxr.load_split.cache_clear()
    yield tmp_path / "cache"
    cxr.load_split.cache_clear()


def clean_case(index: int = 1) -> cxr_cases.Case:
    """A patient with no findings, a normal heart and little noise."""
    case = cxr_cases.sample_case(cxr_cases.case_rng(0, "train", index))
    return dataclasses.replace(case, nodules=(), effusions=(), opacities=(), pneumothorax=None,
                               cardiomegaly=False, ctr=0.44, noise=0.005)


def change(case: cxr_cases.Case, size: int = 64, **findings) -> np.ndarray:
    """|image with the findings - image without|, same patient and noise."""
    return np.abs(cxr_drawing.render(dataclasses.replace(case, **findings), size) - cxr_drawing.render(case, size))


def test_shapes_dtype_and_range():
    images, labels = cxr_drawing.generate(0, "train", 6, 32)
    assert images.shape == (6, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (6, len(cxr_cases.FINDINGS)) and set(np.unique(labels)) <= {0, 1}
    assert images.std() > 20  # not blank
    corners = images[:, :2, :2].mean()
    assert corners < images[:, 12:20, 12:20].mean()  # dark background, bright body


@pytest.mark.parametrize("size", [16, 17, 45, 128])
def test_any_size_from_16(size):
    images, _ = cxr_drawing.generate(0, "test", 2, size)
    assert images.shape == (2, size, size) and images.max() > images.min()


def test_anatomy_lungs_dark_mediastinum_bright():
    case = clean_case()
    image, masks = cxr_drawing.render(case, 64), cxr_drawing.anatomy_masks(case, 64)
    lungs = (masks["lung_right"] + masks["lung_left"]) * (1 - masks["heart"]) > 0.9
    soft_tissue = (masks["body"] > 0.9) & (masks["lung_right"] + masks["lung_left"] < 0.1)
    background = masks["body"] < 0.1
    assert image[background].mean() < image[lungs].mean() < image[soft_tissue].mean()
    assert image[masks["heart"] > 0.9].mean() > image[lungs].mean() + 0.1


def test_deterministic_and_first_k_independent_of_n():
    images, labels = cxr_drawing.generate(3, "val", 5, 32)
    again, again_labels = cxr_drawing.generate(3, "val", 5, 32)
    longer, longer_labels = cxr_drawing.generate(3, "val", 12, 32)
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)
    assert np.array_equal(images, longer[:5]) and np.array_equal(labels, longer_labels[:5])


def test_seeds_differ():
    a, _ = cxr_drawing.generate(0, "train", 4, 32)
    b, _ = cxr_drawing.generate(1, "train", 4, 32)
    assert all(not np.array_equal(x, y) for x, y in zip(a, b))


def test_splits_share_no_image():
    seen = {}
    for split in cxr_cases.SPLIT_IDS:
        images, _ = cxr_drawing.generate(0, split, 40, 16)
        for image in images:
            key = image.tobytes()
            assert key not in seen, f"an image of {split} repeats one of {seen.get(key)}"
            seen[key] = split


def test_prevalences_and_co_occurrence():
    cases = [cxr_cases.sample_case(cxr_cases.case_rng(0, "train", i)) for i in range(800)]
    labels = np.stack([c.labels for c in cases])
    prevalence = dict(zip(cxr_cases.FINDINGS, labels.mean(0)))
    for finding, value in prevalence.items():
        assert 0.06 <= value <= 0.30, (finding, value)
    findings = cxr_cases.FINDINGS
    cardio, effusion = labels[:, findings.index("cardiomegaly")], labels[:, findings.index("effusion")]
    assert effusion[cardio == 1].mean() > 2 * effusion[cardio == 0].mean()
    assert 0.5 < (labels.sum(1) == 0).mean() < 0.75  # most images are normal


def test_cardiomegaly_is_a_wider_heart_with_overlap():
    cases = [cxr_cases.sample_case(cxr_cases.case_rng(0, "train", i)) for i in range(800)]
    ctr = np.array([c.ctr for c in cases])
    sick = np.array([c.cardiomegaly for c in cases])
    assert ctr[sick].mean() > 0.5 > ctr[~sick].mean()
    assert (ctr[sick] < 0.5).any() and (ctr[~sick] > 0.5).any()  # not trivially separable
    # the drawn heart is as wide as the ratio says: width / thoracic width = ctr
    case = clean_case()
    for ratio in (0.42, 0.58):
        heart = cxr_drawing.anatomy_masks(dataclasses.replace(case, ctr=ratio), 256)["heart"] > 0.5
        x, _ = cxr_drawing.body_grid(case, 256)
        width = x[heart].max() - x[heart].min()
        assert width / (2 * case.thorax) == pytest.approx(ratio, abs=0.02)


def test_nodule_shows_at_its_place():
    case = clean_case()
    x0, y0 = case.lungs[0].to_body(0.5, 0.5)
    diff = change(case, nodules=(cxr_cases.Blob(x0, y0, 0.06, 0.2),))
    x, y = cxr_drawing.body_grid(case, 64)
    peak = np.unravel_index(diff.argmax(), diff.shape)
    assert np.hypot(x[peak] - x0, y[peak] - y0) < 0.06
    assert diff[np.hypot(x - x0, y - y0) > 0.15].max() < 0.02


def test_effusion_fills_the_lung_base():
    case = clean_case()
    diff = change(case, effusions=(cxr_cases.Effusion(1, 0.25, 0.8),))
    x, y = cxr_drawing.body_grid(case, 64)
    u, t = case.lungs[1].to_local(x, y)
    low_in_lung = (t > 0.5) & (u > -0.1) & (u < 1.1)
    assert diff[low_in_lung].sum() > 0.95 * diff.sum() and diff.max() > 0.15
    lateral = diff[(t > 0.6) & (u > 0.7) & (u < 1)].mean()
    assert lateral > diff[(t > 0.6) & (u > 0) & (u < 0.3)].mean()  # meniscus rises laterally


def test_opacity_brightens_inside_a_lung():
    case = clean_case()
    lung = case.lungs[0]
    blobs = tuple(cxr_cases.Blob(*lung.to_body(u, 0.4), 0.08, 0.2) for u in (0.4, 0.6))
    after = cxr_drawing.render(dataclasses.replace(case, opacities=blobs), 64)
    diff = after - cxr_drawing.render(case, 64)
    inside = cxr_drawing.anatomy_masks(case, 64)["lung_right"] > 0.5
    assert diff[inside].sum() > 0.9 * np.abs(diff).sum() and diff.max() > 0.05


def test_pneumothorax_darkens_the_lateral_wall():
    case = clean_case()
    before = cxr_drawing.render(case, 64)
    after = cxr_drawing.render(dataclasses.replace(case, pneumothorax=cxr_cases.Pneumothorax(1, 0.1, 1.0)), 64)
    x, y = cxr_drawing.body_grid(case, 64)
    u, t = case.lungs[1].to_local(x, y)
    rim = (u > 0.75) & (u < 0.95) & (t > 0.3) & (t < 0.7)
    assert (after - before)[rim].mean() < -0.03
    assert np.abs(after - before)[u < 0].max() < 0.02  # the other lung is untouched


def test_labels_follow_the_case():
    case = clean_case()
    assert case.labels.tolist() == [0, 0, 0, 0, 0]
    sick = dataclasses.replace(case, cardiomegaly=True, pneumothorax=cxr_cases.Pneumothorax(0, 0.1, 1))
    assert dict(zip(cxr_cases.FINDINGS, sick.labels.tolist())) == {
        "nodule": 0, "effusion": 0, "cardiomegaly": 1, "opacity": 0, "pneumothorax": 1}


def test_disk_cache_round_trips(private_cache, monkeypatch):
    images, labels = cxr.load_split(0, "val", 7, 24)
    path = cxr.cache_path(0, "val", 7, 24)
    assert path.is_file() and path.parent.parent == private_cache
    assert not images.flags.writeable  # shared by the in-process cache
    cxr.load_split.cache_clear()
    monkeypatch.setattr(cxr, "generate", lambda *a: pytest.fail("should have read the cache"))
    cached, cached_labels = cxr.load_split(0, "val", 7, 24)
    assert np.array_equal(cached, images) and np.array_equal(cached_labels, labels)
    assert list(path.parent.glob("*.tmp")) == []


@pytest.mark.parametrize("garbage", [b"not an npz file", b""])
def test_corrupt_cache_is_regenerated(garbage):
    images, _ = cxr.load_split(0, "test", 5, 20)
    path = cxr.cache_path(0, "test", 5, 20)
    path.write_bytes(garbage)
    cxr.load_split.cache_clear()
    with pytest.warns(UserWarning, match="regenerating"):
        again, _ = cxr.load_split(0, "test", 5, 20)
    assert np.array_equal(again, images)
    cxr.load_split.cache_clear()
    assert np.array_equal(cxr.load_split(0, "test", 5, 20)[0], images)  # rewritten, readable


@pytest.mark.parametrize("spec, message", [
    ("synthetic-cxr?n=0", "n must be at least 1"),
    ("synthetic-cxr?n_test=-3", "n_test must be at least 1"),
    ("synthetic-cxr?size=8", "size must be between 16"),
    ("synthetic-cxr?seed=-1", "seed must be >= 0"),
    ("synthetic-cxr?n=many", "not a valid int"),
    ("synthetic-cxr?colour=1", "unknown option 'colour'"),
    ("synthetic-cxr:big", "takes no ':target'"),
])
def test_bad_options(spec, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(spec)


def test_through_load_dataset():
    splits = load_dataset("synthetic-cxr?n=200&size=32&n_val=50&n_test=60")
    info = splits.info
    assert info.task == "multilabel" and info.label_names == cxr_cases.FINDINGS and info.channels == 1
    assert dict(info.split_sizes) == {"train": 200, "val": 50, "test": 60}
    assert info.image_size == (32, 32)
    image, label = splits.train[0]
    assert image.shape == (32, 32) and 0 <= image.min() and image.max() <= 1
    assert label.shape == (len(cxr_cases.FINDINGS),) and label.dtype.is_floating_point
    tenth = load_dataset("synthetic-cxr?n=200&size=32&n_val=50&n_test=60", fraction=0.1)
    assert 20 <= len(tenth.train) <= 25 and len(tenth.val) == 50 and len(tenth.test) == 60
    assert tenth.train.labels.sum(0).min() >= 1  # every finding keeps a positive
    full_rows = {row.tobytes() for row in splits.train.images.array}
    assert all(row.tobytes() in full_rows for row in tenth.train.images.array)


def test_default_sizes():
    assert (cxr.DEFAULTS["n"], cxr.DEFAULTS["n_val"], cxr.DEFAULTS["n_test"]) == (2000, 400, 1000)
    assert cxr.DEFAULTS["size"] == 64 and cxr.DEFAULTS["seed"] == 0
