"""A search trial whose worker dies is resumed as itself: the search then tries the same
configurations, with the same intermediate values and prunes them at the same rungs, as one that
was never interrupted (issue 28, item 3). Real training on tiny synthetic data; the worker's death
is simulated the way it looks to the storage (the trial left RUNNING under a process that is gone),
then ``reap_dead`` finds it as it finds a SIGKILLed worker's."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from medpeft.studies.engine import Engine
from medpeft.studies.spec import load_study
from medpeft.studies.trials import KEPT_IN_PLACE, VALIDATED, resume_in_place

from .conftest import write_study

QUIET = Console(quiet=True)
SEARCH = {"trials": 6, "pruner": "asha", "reduction_factor": 2, "min_resource": 2, "patience": None, "seed": 0,
          "space": {"FFT": {"lr": {"low": 1.0e-5, "high": 3.0e-2, "log": True}}}}


class Killed(BaseException):
    """The worker's death as its trial sees it: nothing of ``run_trial`` runs after it (a
    BaseException, like SIGKILL, is caught by none of its handlers)."""


class KillingEngine(Engine):
    """Trains cells for real; dies once in search trial ``kill[0]`` at the validation of epoch
    ``kill[1]``, before reporting it or just after (``kill[2]``: "before" / "after")."""

    kill: tuple | None = None

    def train_cell(self, cell, path, on_validation):
        def hook(epoch, val):
            dies = self.kill is not None and path.name == f"t{self.kill[0]}" and epoch == self.kill[1]
            if dies and self.kill[2] == "before":
                raise Killed()
            on_validation(epoch, val)
            if dies:
                raise Killed()
        return super().train_cell(cell, path, hook)


def study_file(folder: Path, pruner: str = "asha") -> str:
    return write_study(folder, name="retry", fractions=[1.0], methods=[{"name": "fft", "label": "FFT"}],
                       train={"epochs": 5, "batch_size": 32, "n_bootstrap": 0, "warmup_epochs": 0, "min_lr": 0.0},
                       search={**SEARCH, "pruner": pruner})


def tried(engine: Engine) -> list[tuple]:
    """Every trial of the search: number, state, params, intermediate values, the pruner's rung
    values (system attrs ``completed_rung_*``) and the value."""
    search = engine.search_study(engine.cells[0].group)
    return [(t.number, t.state, t.params, t.intermediate_values,
             {k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung")}, t.value)
            for t in search.get_trials(deepcopy=False)]


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def uninterrupted(folder: Path, pruner: str) -> list[tuple]:
    engine = Engine(load_study(study_file(folder, pruner)), folder, console=QUIET)
    engine.work()
    return tried(engine)


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """The uninterrupted search of each pruner, run once for the module."""
    found = {}

    def get(pruner: str) -> list[tuple]:
        if pruner not in found:
            found[pruner] = uninterrupted(tmp_path_factory.mktemp(f"whole-{pruner}"), pruner)
        return found[pruner]
    return get


def victim(whole: list[tuple]) -> tuple[int, int]:
    """The trial to kill and the epoch: the latest trial after the first that validated 3 times
    (its third validation, epoch 2), so later trials are judged against its rungs."""
    reached = [number for number, _, _, values, _, _ in whole if number > 0 and len(values) >= 3]
    assert reached, f"no trial after the first reached epoch 3: {whole}"
    return reached[0], 2


@pytest.mark.slow  # ~1-4 min each on a busy 2-core machine (real training, two searches)
@pytest.mark.parametrize("pruner, moment", [("asha", "before"), ("asha", "after"), ("hyperband", "after")])
def test_a_killed_search_trial_resumes_as_itself_and_the_search_is_unchanged(tmp_path, baselines, pruner, moment):
    whole = baselines(pruner)
    assert any(state == TrialState.PRUNED for _, state, *_ in whole) or pruner == "hyperband", whole
    number, epoch = victim(whole)
    engine = KillingEngine(load_study(study_file(tmp_path, pruner)), tmp_path, console=QUIET)
    engine.kill = (number, epoch, moment)
    with pytest.raises(Killed):
        engine.work()
    search = engine.search_study(engine.cells[0].group)
    killed = next(t for t in search.get_trials(deepcopy=False) if t.number == number)
    assert killed.state == TrialState.RUNNING  # as a SIGKILLed worker leaves it
    assert len(killed.intermediate_values) == epoch + (moment == "after")
    search._storage.set_trial_user_attr(killed._trial_id, "pid", dead_pid())  # its process is gone

    engine.kill = None
    restarted = KillingEngine(load_study(study_file(tmp_path, pruner)), tmp_path, console=QUIET)
    restarted.work()  # another worker: reaps the trial and resumes it, then the rest of the search
    assert tried(restarted) == whole  # same trials, params, steps, rungs, prunes and values
    resumed = next(t for t in restarted.search_study(restarted.cells[0].group).get_trials(deepcopy=False)
                   if t.number == number)
    assert (resumed.user_attrs["resumed"], resumed.user_attrs["interrupted"]) == (1, "worker process died")
    assert resumed.user_attrs[VALIDATED] == list(range(len(resumed.intermediate_values)))
    log = (tmp_path / resumed.user_attrs["run_dir"] / "log.txt").read_text()
    assert log.count("start:") == 1 and "resumed after epoch" in log  # the run continued, not restarted
    assert restarted.records()[0]["params"] == Engine(load_study(study_file(tmp_path, pruner)), tmp_path,
                                                      console=QUIET).search_result(restarted.cells[0].group)


def fresh_search(tmp_path) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """A search study with one RUNNING trial that suggested an lr, reported twice and holds a
    worker's identity."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=60, grace_period=1)
    study = optuna.create_study(study_name="s:search:g", storage=storage, direction="maximize")
    trial = study.ask()
    lr = trial.suggest_float("lr", 1.0e-4, 1.0e-2, log=True)
    for step, value in ((1, 0.6), (2, 0.7)):
        trial.report(value, step)
    for name, value in {"run_dir": "runs/search/g/t0", "cell": "c", "pid": 12345, "host": "h",
                        "progress": "epoch 2", VALIDATED: [0, 1]}.items():
        trial.set_user_attr(name, value)
    study._storage.set_trial_system_attr(trial._trial_id, "completed_rung_0", 0.6)
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.1)  # (SQLite keeps whole seconds) the heartbeat is stale: the trial's worker looks dead from any machine
    assert study._storage._backend._get_stale_trial_ids(study._study_id) == [trial._trial_id]
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen.params == {"lr": lr}
    return study, frozen


def test_resume_in_place_keeps_the_trial_and_drops_the_dead_attempt(tmp_path):
    study, frozen = fresh_search(tmp_path)
    assert resume_in_place(study, frozen, "worker process died")
    again = study.get_trials(deepcopy=False)[0]
    assert again.state == TrialState.WAITING and again.number == 0
    assert again.params == frozen.params and again.intermediate_values == {1: 0.6, 2: 0.7}
    assert again.system_attrs["completed_rung_0"] == 0.6
    assert set(again.user_attrs) <= set(KEPT_IN_PLACE)  # no identity: nobody takes the next attempt for dead
    assert again.user_attrs["run_dir"] == "runs/search/g/t0" and again.user_attrs[VALIDATED] == [0, 1]
    assert again.user_attrs["resumed"] == 1
    claimed = study.ask()  # the next worker gets the same trial, its lr as suggested before
    assert study._storage._backend._get_stale_trial_ids(study._study_id) == []  # the old heartbeat went with it
    assert claimed.number == 0 and claimed.suggest_float("lr", 1.0e-4, 1.0e-2, log=True) == frozen.params["lr"]
    assert not resume_in_place(study, frozen, "worker process died")  # a second reaper: claimed anew since


def test_of_two_reapers_one_moves_the_trial(tmp_path):
    study, frozen = fresh_search(tmp_path)
    assert [resume_in_place(study, frozen, "worker process died") for _ in range(2)] == [True, False]
    assert study.get_trials(deepcopy=False)[0].user_attrs["resumed"] == 1


def test_a_trial_asked_beyond_the_search_count_is_closed_unrun(tmp_path):
    """Two workers that find a search one trial short at the same moment (both resuming after a
    database outage) each ask for one: the later one is surplus and closed without params."""
    import optuna

    from medpeft.studies.search import SURPLUS, surplus
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="x:search:g")
    asked = [study.ask() for _ in range(4)]
    assert not any(surplus(study, trial, 4) for trial in asked)  # the four the search asks for
    extra = study.ask()
    assert surplus(study, extra, 4)
    frozen = study.get_trials(deepcopy=False)[extra.number]
    assert frozen.state == optuna.trial.TrialState.FAIL and frozen.user_attrs == {SURPLUS: True} and not frozen.params
    study.enqueue_trial({"lr": 1e-3}, user_attrs={"retry_of": 1, "cell": "c"})  # a queued retry is never surplus
    assert not surplus(study, study.ask(), 4)
