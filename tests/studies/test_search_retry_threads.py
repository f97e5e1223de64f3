"""The torch thread counts a cell was trained with are part of its recorded setup (its trial, its
record, ``results.csv``) but not of its key: another thread count never re-runs a finished cell
(issue 28, item 7; docs/studies.md, "What repeats exactly")."""
from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from medpeft.studies.report import results_rows
from medpeft.studies.spec import load_study
from medpeft.studies.trials import thread_setup

from .conftest import write_study
from .test_search import InstantEngine

QUIET = Console(quiet=True)


def test_an_attempt_records_its_thread_counts_and_a_change_between_attempts():
    now, interop = torch.get_num_threads(), torch.get_num_interop_threads()
    assert thread_setup({}) == {"threads": now, "interop_threads": interop}
    assert thread_setup({"threads": now, "interop_threads": interop}) == {"threads": now, "interop_threads": interop}
    resumed = thread_setup({"threads": now + 1, "interop_threads": interop})  # resumed under fewer threads
    assert resumed == {"threads": f"{now + 1}, then {now}", "interop_threads": interop}
    assert thread_setup(resumed)["threads"] == f"{now + 1}, then {now}"  # a third attempt at the same count


def test_thread_counts_are_recorded_shown_and_not_part_of_the_key(tmp_path):
    path = write_study(tmp_path / "threads", name="threads")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        engine = InstantEngine(load_study(path), Path(path).parent, console=QUIET)
        engine.work()
        records = engine.records()
        assert len(records) == 4
        assert {(r["metrics"]["threads"], r["metrics"]["interop_threads"]) for r in records} == \
            {(1, torch.get_num_interop_threads())}
        trials = engine.final.get_trials(deepcopy=False)
        assert {t.user_attrs["threads"] for t in trials} == {1}
        columns, rows = results_rows(records)
        assert columns[-3:] == ["threads", "interop_threads", "run_dir"]
        assert {row[columns.index("threads")] for row in rows} == {"1"}

        torch.set_num_threads(2)  # another machine or --workers: finished cells stay finished
        again = InstantEngine(load_study(path), Path(path).parent, console=QUIET)
        assert again.enqueue_missing() == 0 and again.work() == 0
        assert len(again.final.get_trials(deepcopy=False)) == len(trials)
        assert {r["metrics"]["threads"] for r in again.records()} == {1}
    finally:
        torch.set_num_threads(before)


def test_a_record_from_before_the_thread_counts_shows_empty_columns():
    record = {"dataset": "d", "fraction": 1.0, "label": "l", "method": "m", "backbone": "b", "seed": 0,
              "run_dir": "r", "metrics": {"test": {"auroc": 0.8}, "steps": 100}}
    columns, rows = results_rows([record])
    assert rows[0][columns.index("threads")] == "" and rows[0][columns.index("interop_threads")] == ""
