"""The shared-data helper of tests/conftest.py: skip locally, fail in CI, naming the path."""
from __future__ import annotations

import pytest

from .conftest import require_shared


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_a_missing_path_fails_in_ci_naming_it(value, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", value)
    missing = tmp_path / "moved" / "pneumoniamnist.npz"
    with pytest.raises(pytest.fail.Exception, match=f"real data not present at {missing}"):
        require_shared(missing)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_path_skips_outside_ci(value, tmp_path, monkeypatch):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    missing = tmp_path / "moved"
    with pytest.raises(pytest.skip.Exception, match=f"real data not present at {missing}"):
        require_shared(missing)


def test_a_present_path_is_returned_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_shared(tmp_path) == tmp_path

