"""The shared-data helper of tests/conftest.py: skip locally, fail in CI, naming the path."""
from __future__ import annotations

import pytest

from .conftest import require_shared


def raised_by(function, *args) -> BaseException | None:
    """What ``function(*args)`` raised: a skip or a failure must not end this test itself."""
    try:
        function(*args)
    except BaseException as outcome:  # pytest's skip and fail are BaseExceptions
        return outcome
    return None


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_a_missing_path_fails_in_ci_naming_it(value, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", value)
    missing = tmp_path / "moved" / "pneumoniamnist.npz"
    outcome = raised_by(require_shared, missing)
    assert type(outcome) is pytest.fail.Exception, f"expected a failure, got {outcome!r}"
    assert f"real data not present at {missing}" in str(outcome)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_path_skips_outside_ci(value, tmp_path, monkeypatch):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    missing = tmp_path / "moved"
    outcome = raised_by(require_shared, missing)
    assert type(outcome) is pytest.skip.Exception, f"expected a skip, got {outcome!r}"
    assert f"real data not present at {missing}" in str(outcome)


def test_a_present_path_is_returned_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_shared(tmp_path) == tmp_path

