"""The study engine: Optuna studies in a shared storage, worked on by any number of workers.

One engine for grids and searches:
- the **final** stage is one Optuna study whose trials are the cells (dataset x fraction x
  backbone x method x seed). Cells are enqueued as WAITING trials and claimed by Optuna's atomic
  WAITING -> RUNNING update, so two workers never run the same cell. (Optuna's GridSampler is
  not used for this: with concurrent workers it may evaluate a grid point twice, as its
  documentation says.) A cell that was enqueued twice by two starters at once is claimed once;
  the copy is closed as a duplicate.
- a **search** (optional, :mod:`.search`) is one Optuna study per (dataset, fraction, backbone,
  method) whose trials (a space-filling start, then TPE) are pruned by ASHA or Hyperband. When a
  search has its trials, the best configuration's seeds are enqueued in the final stage and
  scored on test (a chosen value at the edge of its range is warned about and in the records).
  A search whose validation split has one class has no AUROC to rank by: it stops at its first
  trial and its cells are listed as failed with the reason (:mod:`.trials`, ``NoValidationAUROC``).

Every trial is one ordinary run directory (``<dir>/runs/...``), so ``medpeft eval`` works on
any of them, and its metrics (without history) are stored with the trial, so a report can be
made from the storage alone. The storage is a SQLite file in the study's folder by default,
or any database URL (``postgresql://...``): workers on other machines then join the same study.
Opening it, and waiting through database outages, is :mod:`.storage`.

This module holds :class:`Engine` (which cells there are, the queue, the worker loop, status and
records); one trial's life, kill-safe (claim lock, heartbeat, re-queueing the
trials of dead workers), is in :mod:`.trials`; reusing the runs of other studies in
:mod:`.reuse`.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState
from rich.console import Console

from ..console import make_console, print_warning
from ..runtime import RunInUse
from .reuse import find_donor, finished_runs
from .search import (at_edge, best_params, edge_messages, needs_trials, open_search, pruning_reporter, surplus,
                     search_sampler, searched_cell)
from .spec import Cell, StudyConfig, cells, search_space, with_params
from .storage import open_storage, storage_url
from .trials import (BLOCKED, auroc_objective, blocked, claim_lock, duplicate_of, failed_cells,
                     reap_dead, run_trial, shown_auroc)

POLL = 2.0  # seconds between looks at the storage while waiting for other workers
LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class Progress:
    total: int
    done: int
    failed: int
    running: list[dict]  # user attrs of running trials (cell, worker, started, progress)
    waiting: int
    mean_seconds: float | None


class Engine:
    """A study's cells in a storage: claim, run, record, recover."""

    def __init__(self, study: StudyConfig, work_dir: str | Path, url: str | None = None, *,
                 console: Console | None = None, worker: str = ""):
        self.study = study
        self.work_dir = Path(work_dir)
        self.url = storage_url(self.work_dir, url)
        if self.url.startswith("sqlite"):
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(self.url)
        self.cells = self.make_cells(study)
        self.console = console or make_console()
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._final = None
        self._search: dict[str, optuna.Study] = {}
        self._reuse_index: dict[str, list[Path]] | None = None

    # -- storage ---------------------------------------------------------------------------
    @property
    def final(self) -> optuna.Study:
        if self._final is None:
            self._final = optuna.create_study(study_name=self.study.name, storage=self.storage,
                                              direction="maximize", load_if_exists=True)
        return self._final

    def search_study(self, group: str) -> optuna.Study:
        if group not in self._search:
            self._search[group] = open_search(self.study, self.storage, group)
        return self._search[group]

    # -- cells -----------------------------------------------------------------------------
    def searched(self, cell: Cell) -> bool:
        return bool(search_space(self.study, cell.method, cell.config.method))

    def groups(self) -> dict[str, list[Cell]]:
        out: dict[str, list[Cell]] = {}
        for cell in self.cells:
            out.setdefault(cell.group, []).append(cell)
        return out

    def search_result(self, group: str) -> dict | None:
        """The best params of a finished search (None while it needs or runs trials)."""
        return best_params(self.search_study(group), self.study.search.trials, group)

    def final_cells(self) -> list[Cell]:
        """The final-stage cells known so far (searched groups only once their search is done)."""
        out = []
        for group, members in self.groups().items():
            if self.searched(members[0]):
                params = self.search_result(group)
                if params is None:
                    continue
                out += [with_params(cell, params) for cell in members]
            else:
                out += members
        return out

    def all_final_known(self) -> bool:  # a blocked search (blocked_searches) has no result to wait for
        return all(not self.searched(m[0]) or self.search_result(g) is not None or blocked(self.search_study(g))
                   for g, m in self.groups().items())

    def blocked_searches(self) -> dict[str, str]:
        """Searches that cannot rank their trials (group -> why: ``trials.NoValidationAUROC``)."""
        return {g: why for g, m in self.groups().items() if self.study.search and self.searched(m[0])
                and (why := blocked(self.search_study(g)))}

    # -- preparing ----------------------------------------------------------------------------
    def enqueue_missing(self, retry_failed: bool = False) -> int:
        """Enqueue every known final cell with no waiting, running or finished trial; a cell whose
        trial failed with an error only when ``retry_failed`` (once per ``study run``, not in a
        loop within it)."""
        trials = self.final.get_trials(deepcopy=False)
        live = {t.user_attrs.get("cell") for t in trials if t.state in LIVE}
        if retry_failed:  # a blocked search is tried once more (its data may have been fixed)
            for group in self.blocked_searches():
                self.search_study(group).set_user_attr(BLOCKED, "")
        else:
            live |= {t.user_attrs.get("cell") for t in trials if t.state == TrialState.FAIL
                     and t.user_attrs.get("error") and not t.user_attrs.get("duplicate_of")}
        added, warned = 0, set()
        for cell in self.final_cells():
            if cell.key not in live:
                attrs = {"cell": cell.key, "stage": "final", "group": cell.group}
                params = self._searched_params(cell)
                if params is not None:
                    attrs["params"] = params
                    if cell.group not in warned:
                        warned.add(cell.group)
                        for message in edge_messages(cell.group, params, self._space(cell)):
                            print_warning(self.console, message)
                self.final.enqueue_trial({}, user_attrs=attrs)
                added += 1
        return added

    def _searched_params(self, cell: Cell) -> dict | None:
        return self.search_result(cell.group) if self.searched(cell) else None

    def _space(self, cell: Cell) -> dict:
        return search_space(self.study, cell.method, cell.config.method)

    # -- recovery --------------------------------------------------------------------------
    def reap(self) -> int:
        """Fail the RUNNING trials whose worker is dead and enqueue them again (same cell, params
        and run directory, so they resume). Returns how many were reaped."""
        studies = [self.final] + ([self.search_study(g) for g, m in self.groups().items() if self.searched(m[0])]
                                  if self.study.search else [])
        return sum(reap_dead(study, self.storage) for study in studies)

    # -- status --------------------------------------------------------------------------------
    def progress(self) -> Progress:
        trials = self.final.get_trials(deepcopy=False)
        keys = {c.key for c in self.final_cells()}
        done = {t.user_attrs.get("cell") for t in trials if t.state == TrialState.COMPLETE} & keys
        running = [dict(t.user_attrs) for t in trials if t.state == TrialState.RUNNING]
        if self.study.search:
            for group, members in self.groups().items():
                if self.searched(members[0]):
                    for t in self.search_study(group).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                        running.append(dict(t.user_attrs))
        waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
        seconds = [t.user_attrs["seconds"] for t in trials if t.state == TrialState.COMPLETE
                   and "seconds" in t.user_attrs and not t.user_attrs.get("reused_from")]  # a copy takes ~0 s
        failed = len(failed_cells(trials)) + sum(len(self.groups()[g]) for g in self.blocked_searches())
        return Progress(total=len(self.cells), done=len(done), failed=failed, running=running,
                        waiting=waiting, mean_seconds=sum(seconds) / len(seconds) if seconds else None)

    def records(self) -> list[dict]:
        """One record per finished final cell (the report's input), in the study's order."""
        by_cell = {}
        for trial in self.final.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            by_cell.setdefault(trial.user_attrs.get("cell"), trial)
        out = []
        for cell in self.final_cells():
            trial = by_cell.get(cell.key)
            if trial is not None and "record" in trial.user_attrs:
                out.append({**cell.record(), "run_dir": str(self.work_dir / trial.user_attrs["run_dir"]),
                            "metrics": trial.user_attrs["record"], "params": trial.user_attrs.get("params", {}),
                            "reused_from": trial.user_attrs.get("reused_from"),
                            "at_edge": at_edge(trial.user_attrs.get("params", {}), self._space(cell))})
        return out

    def compute_time(self) -> dict:
        """Seconds this study's results cost: the finished cells (their runs' wall time), the
        search trials (start to end, pruned ones included) and each pretraining step (from its
        checkpoint's card; a step shared with another study counts in both)."""
        from ..models.cache import checkpoint_dir, read_card

        records = self.records()
        cells = sum(r["metrics"].get("wall_time_s", 0.0) for r in records if not r.get("reused_from"))
        reused = sum(1 for r in records if r.get("reused_from"))
        search, trials = 0.0, 0
        if self.study.search:
            for group, members in self.groups().items():
                if not self.searched(members[0]):
                    continue
                for t in self.search_study(group).get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                                                      TrialState.PRUNED)):
                    if t.datetime_start and t.datetime_complete:
                        search += (t.datetime_complete - t.datetime_start).total_seconds()
                        trials += 1
        pretraining = {}
        for cell in self.cells:
            if cell.pretrain_name and cell.pretrain_name not in pretraining:
                path = checkpoint_dir(cell.pretrain_name) / "checkpoint.pth"
                card = read_card(path) if path.is_file() else {}
                pretraining[cell.pretrain_name] = float(card.get("wall_time_s", 0.0))
        return {"cells": cells, "reused": reused, "search": search, "search_trials": trials,
                "pretraining": pretraining}

    def failures(self) -> list[tuple[str, str]]:
        """(cell, error) of every failed cell, sorted (``trials.failed_cells``); (search <group>, why)."""
        blocked_ones = [(f"search {group}", why) for group, why in self.blocked_searches().items()]
        return sorted(failed_cells(self.final.get_trials(deepcopy=False)).items()) + blocked_ones

    # -- working ---------------------------------------------------------------------------
    def work(self, *, stop_when_idle: bool = True) -> int:
        """Run cells and search trials until the study is done; returns how many this worker ran."""
        ran = 0
        self.ensure_pretrained()
        while True:
            self.reap()
            if self.run_next_final():
                ran += 1
                continue
            if self.run_next_search():
                ran += 1
                continue
            if self.enqueue_missing():
                continue
            status = self.progress()
            if not status.running and not status.waiting and self.all_final_known():
                return ran
            if not stop_when_idle:
                return ran
            time.sleep(POLL)

    def ensure_pretrained(self) -> None:
        """Make every backbone's pretraining step once (another local worker may be making it)."""
        from ..pretrain import ensure_pretrained

        done = set()
        for cell in self.cells:
            if cell.pretrain is None or cell.pretrain_name in done:
                continue
            while True:
                try:
                    ensure_pretrained(cell.pretrain_name, cell.pretrain, console=self.console, progress=False)
                    break
                except RunInUse:
                    time.sleep(POLL)  # another worker of this machine is pretraining it
            done.add(cell.pretrain_name)

    def claiming(self):
        """Serialise claims on SQLite (``trials.claim_lock``); other databases claim atomically."""
        return claim_lock(self.url, self.work_dir)

    def run_next_final(self) -> bool:
        study = self.final
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return False
        with self.claiming():
            trial = study.ask()
        key = trial.user_attrs.get("cell")
        if key is None:  # another worker took the last waiting cell between our look and our claim
            trial.set_user_attr("note", "claimed nothing: the queue was empty")
            study.tell(trial, state=TrialState.FAIL)
            return False
        duplicate = duplicate_of(study, trial.number, key)
        if duplicate is not None:
            trial.set_user_attr("duplicate_of", duplicate)
            study.tell(trial, state=TrialState.FAIL)
            return True
        cell = self._cell(key)
        if cell is None:  # a cell of an older version of the study file
            trial.set_user_attr("note", "not a cell of the current study file")
            study.tell(trial, state=TrialState.FAIL)
            return True
        run_dir = Path("runs") / cell.key
        run_trial(self, study, trial, cell, run_dir, on_validation=None)
        return True

    def run_next_search(self) -> bool:
        if self.study.search is None:
            return False
        for group, members in self.groups().items():
            cell = members[0]
            if not self.searched(cell):
                continue
            study = self.search_study(group)
            if blocked(study) or not needs_trials(study, self.study.search.trials):
                continue
            with self.claiming():
                trial = study.ask()
            if surplus(study, trial, self.study.search.trials):  # another worker asked the last one
                continue
            study.sampler = search_sampler(self.study.search, group, trial.number, self._space(cell))
            searched = searched_cell(self.study, cell, trial)
            run_dir = Path(trial.user_attrs.get("run_dir") or Path("runs") / "search" / group / f"t{trial.number}")
            run_trial(self, study, trial, searched, run_dir, on_validation=pruning_reporter(trial), search=True)
            return True
        return False

    # -- what a cell is (another kind of study overrides these four) --------------------------
    def make_cells(self, study) -> list:
        return cells(study)

    def train_cell(self, cell: Cell, path: Path, on_validation: Callable | None) -> dict:
        """Run the cell into ``path`` (resuming) and return its metrics."""
        from ..train import finetune

        return finetune(cell.config, path, resume=True, console=self.console, progress=False,
                        on_validation=on_validation)

    def donor(self, cell: Cell) -> Path | None:
        """A finished run of another study (``reuse``) that is this cell: the same run config as
        today's code reads it (data, subset, backbone and checkpoint name, method and options,
        every training setting, seed), whatever the labels. Its results are this cell's. A cached
        checkpoint name stands for one pretraining recipe (``CheckpointConflict``), so the same
        name means the same foundation model."""
        if not self.study.reuse:
            return None
        return find_donor(cell.config, self._finished_elsewhere)

    def _finished_elsewhere(self) -> dict[str, list[Path]]:
        """Finished runs of the ``reuse`` studies (not their search trials), by saved config."""
        if self._reuse_index is None:
            self._reuse_index = finished_runs(self.study, self.console)
        return self._reuse_index

    def objective(self, metrics: dict, search: bool) -> float:
        """The trial's value: the validation AUROC (``trials.auroc_objective``)."""
        return auroc_objective(metrics, search)

    def result_line(self, cell: Cell, metrics: dict) -> str:
        return f"test AUROC {metrics['test']['auroc']:.4f}, val {shown_auroc(metrics['val']['auroc'])}"

    def _cell(self, key: str) -> Cell | None:
        for cell in self.final_cells():
            if cell.key == key:
                return cell
        return None
