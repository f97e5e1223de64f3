"""A study's data entry can size validation to the label budget (val_fraction); the default keeps cell keys."""
from __future__ import annotations

import pytest

from medpeft.studies.spec import cells, load_study

from .conftest import TINY_DATA, write_study


def test_val_fraction_reaches_the_run_config_and_only_a_set_value_renames_cells(tmp_path):
    plain = cells(load_study(write_study(tmp_path / "a")))
    explicit_defaults = cells(load_study(write_study(
        tmp_path / "b", data=[{"spec": TINY_DATA, "label": "synth", "val_fraction": None, "val_min_per_class": 5}])))
    assert [c.key for c in explicit_defaults] == [c.key for c in plain]
    assert all(c.config.data.val_fraction is None for c in plain)
    matched = cells(load_study(write_study(
        tmp_path / "c", data=[{"spec": TINY_DATA, "label": "synth", "val_fraction": "match", "val_min_per_class": 3}])))
    assert not {c.key for c in matched} & {c.key for c in plain}
    assert {(c.fraction, c.config.data.validation_fraction, c.config.data.val_min_per_class) for c in matched} == \
        {(0.5, 0.5, 3), (1.0, 1.0, 3)}


def test_a_bad_val_fraction_fails_when_the_study_is_loaded(tmp_path):
    with pytest.raises(ValueError, match="val_fraction must be a fraction"):
        cells(load_study(write_study(tmp_path / "a", data=[{"spec": TINY_DATA, "val_fraction": "half"}])))
