"""A study on data whose validation split has one class (no validation AUROC): a grid cell is a
result (its epoch chosen by validation loss, its trial's value -inf with a note), while a search,
which cannot rank its trials, stops at its first trial with a message naming the data and the
fraction; its cells are listed as failed, the rest of the study runs, and nothing loops."""
from __future__ import annotations

import math
from pathlib import Path

from optuna.trial import TrialState
from rich.console import Console

from medpeft.cli import main
from medpeft.studies.engine import Engine
from medpeft.studies.spec import load_study
from medpeft.studies.trials import NO_AUROC_NOTE

from ..train.test_one_class_validation_pass import one_class_validation_csv
from .conftest import TINY_BACKBONE, write_study

QUIET = Console(quiet=True)


def test_a_grid_cell_completes_and_a_search_stops_with_the_reason(tmp_path, capsys):
    spec = one_class_validation_csv(tmp_path / "data")
    path = write_study(tmp_path / "study", name="oneclass", data=[{"spec": spec, "label": "oc"}], fractions=[1.0],
                       backbones=[{"label": "tiny", "backbone": TINY_BACKBONE}],
                       train={"epochs": 2, "batch_size": 8, "n_bootstrap": 0},
                       search={"trials": 2, "pruner": "asha", "patience": None,
                               "space": {"LoRA": {"lr": {"choices": [1.0e-3, 1.0e-2]}}}})
    engine = Engine(load_study(path), Path(path).parent, console=QUIET)
    assert engine.work() == 2  # the FFT cell and one search trial; then nothing is left to start

    final = engine.final.get_trials(deepcopy=False)
    assert [t.state for t in final] == [TrialState.COMPLETE]  # FFT: no search space, a grid cell
    assert final[0].value == -math.inf and final[0].user_attrs["note"] == NO_AUROC_NOTE
    records = engine.records()
    assert len(records) == 1 and records[0]["label"] == "FFT"
    assert 0.0 <= records[0]["metrics"]["test"]["auroc"] <= 1.0

    group = next(g for g in engine.groups() if "LoRA" in g)
    search = engine.search_study(group).get_trials(deepcopy=False)
    reason = ("the validation split of oc at fraction 1 has one class (no label with both classes): a search "
              "needs a validation AUROC")
    assert [t.state for t in search] == [TrialState.FAIL]
    assert search[0].user_attrs["error"].startswith(reason)
    assert engine.blocked_searches() == {group: search[0].user_attrs["error"]}
    status = engine.progress()
    assert (status.total, status.done, status.failed, status.waiting) == (2, 1, 1, 0)
    assert engine.failures() == [(f"search {group}", search[0].user_attrs["error"])]

    assert engine.work() == 0  # a blocked search starts no trial
    assert len(engine.search_study(group).get_trials(deepcopy=False)) == 1
    capsys.readouterr()
    main(["study", "status", path])
    printed = capsys.readouterr()
    shown = " ".join((printed.out + printed.err).split())
    assert f"search {group}: {reason}" in shown

    engine.enqueue_missing(retry_failed=True)  # what the next `study run` does first: try it again
    assert engine.blocked_searches() == {} and not engine.all_final_known()
