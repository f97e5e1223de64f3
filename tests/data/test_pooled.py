"""Pooled loading (data/pooled.py): several specs' training images in order, a fixed spread of
validation images, the fraction per spec, and the errors for no spec, a missing one and mixed channels."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data import DataError
from medpeft.data.pooled import load_pooled, spread

from ..image_folders import save_stamped

A = "synthetic-cxr?n=40&n_val=10&n_test=4&size=16"
B = "synthetic-cxr?n=24&n_val=6&n_test=4&size=16&seed=3"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))


def as_is(splits):
    return splits.train, splits.val


def test_training_images_pooled_in_order_and_validation_spread():
    pooled = load_pooled([A, B], as_is, val_images=4)
    assert len(pooled.train) == 64 and pooled.sources == [(pooled.splits[0].info.name, 40),
                                                          (pooled.splits[1].info.name, 24)]
    assert pooled.val.indices == [0, 5, 10, 15]  # of the 16 validation images, first to last
    assert pooled.channels == 1
    assert len(load_pooled([A, B], as_is, val_images=100).val) == 16  # at most what there is
    assert len(load_pooled([A], as_is, val_images=0).val) == 0


def test_wrap_sees_each_spec_and_test_is_never_used():
    seen = []

    def wrap(splits):
        seen.append(splits.info.name)
        return splits.train, splits.val

    pooled = load_pooled([A, B], wrap, val_images=2)
    assert seen == [s.info.name for s in pooled.splits] and len(seen) == 2


def test_the_fraction_cuts_each_training_split():
    pooled = load_pooled([A, B], as_is, val_images=2, fraction=0.5, fraction_seed=1)
    sizes = [n for _, n in pooled.sources]
    assert len(pooled.train) == sum(sizes) and sizes[0] < 40 and sizes[1] < 24
    assert [s.fraction for s in pooled.splits] == [0.5, 0.5]


def test_spread_picks_evenly():
    assert spread(list(range(10)), 3).indices == [0, 4, 9]  # 4.5 rounds to even
    assert spread(list(range(3)), 5).indices == [0, 1, 2]


def test_no_spec_and_a_missing_spec_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="at least one dataset spec"):
        load_pooled([], as_is, val_images=2)
    with pytest.raises(DataError, match="not found"):
        load_pooled([A, f"folder:{tmp_path / 'missing'}"], as_is, val_images=2)


def rgb_folder(root):
    for split in ("train", "val", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                save_stamped(root / split / name / f"{i}.png", np.full((16, 16, 3), 40 * i, np.uint8))
    return f"folder:{root}"


def test_mixed_channels_are_refused_only_when_asked(tmp_path):
    colour = rgb_folder(tmp_path / "rgb")
    pooled = load_pooled([A, colour], as_is, val_images=2)
    assert len(pooled.train) == 46
    with pytest.raises(DataError, match=r"differ in channels \(\[1, 3\]\)"):
        load_pooled([A, colour], as_is, val_images=2, same_channels=True)
