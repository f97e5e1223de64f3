"""The shared-data helper of tests/conftest.py: skip locally, fail in CI, naming the path; and
``in_ci``, which decides "fail, not skip" for every prerequisite (data, browser, PostgreSQL)."""
from __future__ import annotations

import pytest

from .conftest import in_ci, require_shared
from .studies.conftest import postgres_server

TRUTHY = ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " true ", "1\n", "woodpecker"]
FALSY = [None, "", " ", "0", "false", "False", "no", "off", "OFF"]


def set_ci(monkeypatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)


@pytest.mark.parametrize("value", TRUTHY)
def test_any_truthy_ci_value_is_ci(value, monkeypatch):
    set_ci(monkeypatch, value)
    assert in_ci() is True


@pytest.mark.parametrize("value", FALSY)
def test_unset_empty_and_false_ci_values_are_not_ci(value, monkeypatch):
    set_ci(monkeypatch, value)
    assert in_ci() is False


@pytest.mark.parametrize("value,outcome", [("1", pytest.fail.Exception), ("yes", pytest.fail.Exception),
                                           ("true", pytest.fail.Exception), ("0", pytest.skip.Exception),
                                           (None, pytest.skip.Exception)])
def test_the_postgres_fixture_fails_under_any_truthy_ci(value, outcome, monkeypatch):
    """It used to test ``CI == "true"`` alone: under ``CI=1`` the PostgreSQL tests skipped silently."""
    set_ci(monkeypatch, value)
    monkeypatch.delenv("MEDPEFT_TEST_POSTGRES", raising=False)
    raised = raised_by(postgres_server)
    assert type(raised) is outcome, f"CI={value!r}: expected {outcome.__name__}, got {raised!r}"
    assert "MEDPEFT_TEST_POSTGRES" in str(raised)
    monkeypatch.setenv("MEDPEFT_TEST_POSTGRES", "postgresql://u:p@host/db")
    assert postgres_server() == "postgresql://u:p@host/db"


def raised_by(function, *args) -> BaseException | None:
    """What ``function(*args)`` raised: a skip or a failure must not end this test itself."""
    try:
        function(*args)
    except BaseException as outcome:  # pytest's skip and fail are BaseExceptions
        return outcome
    return None


@pytest.mark.parametrize("value", ["true", "True", "1", "yes"])
def test_a_missing_path_fails_in_ci_naming_it(value, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", value)
    missing = tmp_path / "moved" / "pneumoniamnist.npz"
    outcome = raised_by(require_shared, missing)
    assert type(outcome) is pytest.fail.Exception, f"expected a failure, got {outcome!r}"
    assert f"real data not present at {missing}" in str(outcome)


@pytest.mark.parametrize("value", [None, "", "false", "0", "off"])
def test_a_missing_path_skips_outside_ci(value, tmp_path, monkeypatch):
    set_ci(monkeypatch, value)
    missing = tmp_path / "moved"
    outcome = raised_by(require_shared, missing)
    assert type(outcome) is pytest.skip.Exception, f"expected a skip, got {outcome!r}"
    assert f"real data not present at {missing}" in str(outcome)


def test_a_present_path_is_returned_in_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_shared(tmp_path) == tmp_path

