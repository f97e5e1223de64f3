"""The study engine: Optuna studies in a shared storage, worked on by any number of workers.

One engine for grids and searches:
- the **final** stage is one Optuna study whose trials are the cells (dataset x fraction x
  backbone x method x seed). Cells are enqueued as WAITING trials and claimed by Optuna's atomic
  WAITING -> RUNNING update, so two workers never run the same cell. (Optuna's GridSampler is
  not used for this: with concurrent workers it may evaluate a grid point twice, as its
  documentation says.) A cell that was enqueued twice by two starters at once is claimed once;
  the copy is closed as a duplicate.
- a **search** (optional) is one Optuna study per (dataset, fraction, backbone, method): TPE
  samples the method's search space, each trial reports its validation AUROC after every
  validation, and an ASHA (successive-halving) or Hyperband pruner stops the weak ones; early
  stopping ends the rest. When a search has its trials, the best configuration's seeds are
  enqueued in the final stage and scored on test.

Every trial is one ordinary run directory (``<dir>/runs/...``), so ``medpeft eval`` works on
any of them, and its metrics (without history) are stored with the trial, so a report can be
made from the storage alone. The storage is a SQLite file in the study's folder by default,
or any database URL (``postgresql://...``): workers on other machines then join the same study.

Kill-safe: a worker killed at any point (SIGKILL included) leaves its trial RUNNING. On this
machine a dead worker is recognised at once (its process is gone); elsewhere by Optuna's
heartbeat (no beat for ``GRACE`` seconds). Its trial is then failed and enqueued again with
the same cell, params and run directory, so the run resumes from its last checkpoint. A failed
trial keeps its error and does not stop the study; the next ``study run`` retries it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from rich.console import Console

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from ..console import make_console
from ..runtime import RunConfig, RunDir, RunInUse
from .spec import Cell, StudyConfig, cells, distribution, search_space, with_params

HEARTBEAT = 20  # seconds between heartbeats of a running trial
GRACE = 120  # a trial with no heartbeat for this long is considered dead (other machines)
POLL = 2.0  # seconds between looks at the storage while waiting for other workers
LIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used.*")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(work_dir: Path, url: str | None) -> str:
    """The storage URL: a SQLite file in the study folder by default; ``postgresql://`` URLs use
    the psycopg (3) driver that medpeft installs."""
    if url is None:
        return f"sqlite:///{(work_dir / 'study.db').resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def shown_url(url: str) -> str:
    """A storage URL with its password hidden."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return scheme + sep + rest


def open_storage(url: str) -> RDBStorage:
    """An Optuna RDB storage with heartbeats; an unreachable database is one clear error."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                          heartbeat_stale_trial_callback=requeue)
    except Exception as err:  # sqlalchemy's OperationalError, ArgumentError, ImportError of a driver
        reason = str(err).splitlines()[0][:200]
        raise ValueError(f"cannot open the study storage {shown_url(url)}: {reason}") from None


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
            self._search[group] = self._open_search(group)
        return self._search[group]

    def _open_search(self, group: str) -> optuna.Study:
        search = self.study.search
        pruner = {"asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=search.min_resource,
                                                                 reduction_factor=search.reduction_factor),
                  "hyperband": optuna.pruners.HyperbandPruner(min_resource=search.min_resource,
                                                              reduction_factor=search.reduction_factor),
                  "none": optuna.pruners.NopPruner()}[search.pruner]
        return optuna.create_study(study_name=f"{self.study.name}:search:{group}", storage=self.storage,
                                   direction="maximize", load_if_exists=True, pruner=pruner,
                                   sampler=optuna.samplers.TPESampler(seed=search.seed, constant_liar=True))

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
        study = self.search_study(group)
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        busy = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if len(finished) < self.study.search.trials or busy:
            return None
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        if not complete:
            raise ValueError(f"search {group}: every trial was pruned; widen the search space")
        return dict(study.best_trial.params)

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

    def all_final_known(self) -> bool:
        return len(self.final_cells()) == len(self.cells)

    # -- preparing ----------------------------------------------------------------------------
    def enqueue_missing(self, retry_failed: bool = False) -> int:
        """Enqueue every known final cell with no waiting, running or finished trial; a cell whose
        trial failed with an error only when ``retry_failed`` (once per ``study run``, not in a
        loop within it)."""
        trials = self.final.get_trials(deepcopy=False)
        live = {t.user_attrs.get("cell") for t in trials if t.state in LIVE}
        if not retry_failed:
            live |= {t.user_attrs.get("cell") for t in trials if t.state == TrialState.FAIL
                     and t.user_attrs.get("error") and not t.user_attrs.get("duplicate_of")}
        added = 0
        for cell in self.final_cells():
            if cell.key not in live:
                attrs = {"cell": cell.key, "stage": "final", "group": cell.group}
                params = self._searched_params(cell)
                if params is not None:
                    attrs["params"] = params
                self.final.enqueue_trial({}, user_attrs=attrs)
                added += 1
        return added

    def _searched_params(self, cell: Cell) -> dict | None:
        return self.search_result(cell.group) if self.searched(cell) else None

    # -- recovery --------------------------------------------------------------------------
    def reap(self) -> int:
        """Fail the RUNNING trials whose worker is dead and enqueue them again (same cell, params
        and run directory, so they resume). Returns how many were reaped."""
        studies = [self.final] + ([self.search_study(g) for g, m in self.groups().items() if self.searched(m[0])]
                                  if self.study.search else [])
        host, reaped = socket.gethostname(), 0
        for study in studies:
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                attrs = trial.user_attrs
                if attrs.get("host") == host and attrs.get("pid") and not _alive(int(attrs["pid"])):
                    self.storage.set_trial_user_attr(trial._trial_id, "error", "worker process died")
                    study.tell(trial.number, state=TrialState.FAIL)
                    requeue(study, trial)
                    reaped += 1
            with contextlib.suppress(Exception):
                optuna.storages.fail_stale_trials(study)  # other machines: no heartbeat for GRACE s
        return reaped

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
        return Progress(total=len(self.cells), done=len(done), failed=len(_failed(trials)), running=running,
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
                            "reused_from": trial.user_attrs.get("reused_from")})
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
        """(cell, error) of every failed cell, sorted (see ``_failed``)."""
        return sorted(_failed(self.final.get_trials(deepcopy=False)).items())

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

    @contextlib.contextmanager
    def claiming(self):
        """Serialise claims on SQLite: Optuna pops a WAITING trial with SELECT ... FOR UPDATE, which
        PostgreSQL honours but SQLite ignores, so two local workers could both pop the same trial
        (seen in a real run). SQLite storage is one machine's file, so a file lock beside it closes
        the race; other databases claim atomically by themselves."""
        if not self.url.startswith("sqlite") or fcntl is None:
            yield
            return
        with open(self.work_dir / ".claim.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
        duplicate = self._duplicate_of(study, trial.number, key)
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
        self._run(study, trial, cell, run_dir, on_validation=None)
        return True

    def run_next_search(self) -> bool:
        if self.study.search is None:
            return False
        for group, members in self.groups().items():
            cell = members[0]
            if not self.searched(cell):
                continue
            study = self.search_study(group)
            trials = study.get_trials(deepcopy=False)
            started = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
            waiting = [t for t in trials if t.state == TrialState.WAITING]
            if len(started) >= self.study.search.trials and not waiting:
                continue
            with self.claiming():
                trial = study.ask()
            study.sampler = trial_sampler(self.study.search.seed, trial.number)
            space = search_space(self.study, cell.method, cell.config.method)
            params = {name: suggest(trial, name, distribution(name, spec, name)) for name, spec in space.items()}
            seed = self.study.search.seed
            searched = with_params(_with_seed(cell, seed), params)
            if searched.config.train.patience is None and self.study.search.patience:
                searched = _with_patience(searched, self.study.search.patience)
            run_dir = Path(trial.user_attrs.get("run_dir") or Path("runs") / "search" / group / f"t{trial.number}")

            validations = []

            def report(epoch: int, val: dict, trial=trial) -> None:  # ASHA's resource: validations
                validations.append(val["auroc"])
                trial.report(val["auroc"], step=len(validations))
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val AUROC {val['auroc']:.4f})")

            self._run(study, trial, searched, run_dir, on_validation=report, search=True)
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
        from ..runtime.build import resolve_run_config

        try:
            wanted = resolve_run_config(cell.config)[0].to_dict()
        except (ValueError, FileNotFoundError):  # e.g. its checkpoint is not made yet: it trains
            return None
        for candidate in self._finished_elsewhere().get(_canonical(wanted), []):
            try:  # the index compared configs as saved; confirm as today's code resolves them
                saved = resolve_run_config(RunConfig.from_dict(RunDir(candidate).load_config()))[0].to_dict()
            except (ValueError, TypeError, FileNotFoundError):
                continue
            if saved == wanted:
                return candidate
        return None

    def _finished_elsewhere(self) -> dict[str, list[Path]]:
        """Finished runs of the ``reuse`` studies (not their search trials), by saved config."""
        if self._reuse_index is None:
            index: dict[str, list[Path]] = {}
            for folder in self.study.reuse:
                root = Path(self.study.folder) / folder
                if not root.is_dir():  # a misspelt folder is named; one not run yet (no runs/) is skipped below
                    self.console.print(f"[yellow]reuse: {folder} is not a folder (from {self.study.folder}); "
                                       "nothing is copied from it[/yellow]")
                    continue
                runs = (root / "runs").resolve()
                for candidate in sorted(runs.iterdir()) if runs.is_dir() else ():
                    run = RunDir(candidate)
                    if candidate.name == "search" or not run.is_complete():
                        continue
                    try:
                        config = RunConfig.from_dict(run.load_config()).to_dict()
                    except (ValueError, TypeError, FileNotFoundError):
                        continue
                    index.setdefault(_canonical(config), []).append(candidate)
            self._reuse_index = index
        return self._reuse_index

    def objective(self, metrics: dict, search: bool) -> float:
        """The trial's value: the best validation AUROC."""
        return (max(h["val_auroc"] for h in metrics["history"] if "val_auroc" in h) if search
                else metrics["val"]["auroc"])

    def result_line(self, cell: Cell, metrics: dict) -> str:
        return f"test AUROC {metrics['test']['auroc']:.4f}, val {metrics['val']['auroc']:.4f}"

    def _run(self, study: optuna.Study, trial: optuna.Trial, cell: Cell, run_dir: Path,
             on_validation: Callable | None, search: bool = False) -> None:
        for name, value in {"host": socket.gethostname(), "pid": os.getpid(), "worker": self.worker,
                            "run_dir": str(run_dir), "started": time.time(), "cell": cell.key,
                            "label": _label(cell)}.items():
            trial.set_user_attr(name, value)
        path = self.work_dir / run_dir
        started = time.perf_counter()
        with _heartbeat(self.storage, trial._trial_id):
            try:
                run = RunDir(path)
                donor = None if search or path.exists() else self.donor(cell)
                if donor is not None:
                    metrics = _copy_run(donor, path, self.study.name)
                    trial.set_user_attr("reused_from", str(donor))
                elif run.is_complete():
                    metrics = run.load_metrics()
                else:
                    metrics = self.train_cell(cell, path, self._progress_hook(trial, on_validation))
            except RunInUse:  # another local worker runs this cell under another trial
                trial.set_user_attr("duplicate_of", "the run directory is in use by another worker")
                study.tell(trial, state=TrialState.FAIL)
                return
            except LostClaim as lost:
                self.console.print(f"{_label(cell)}: {lost}; its run directory keeps the last checkpoint")
                return
            except optuna.TrialPruned as pruned:
                trial.set_user_attr("note", str(pruned))
                study.tell(trial, state=TrialState.PRUNED)
                self.console.print(f"{_label(cell)}: {pruned}")
                return
            except KeyboardInterrupt:
                trial.set_user_attr("error", "interrupted")
                frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
                study.tell(trial, state=TrialState.FAIL)
                requeue(study, frozen)  # the next `study run` resumes it
                raise
            except Exception as err:  # recorded with its error; the study goes on
                message = f"{type(err).__name__}: {err}"
                trial.set_user_attr("error", message[:2000])
                study.tell(trial, state=TrialState.FAIL)
                self.console.print(f"{_label(cell)} failed: {message}")
                return
        record = {k: v for k, v in metrics.items() if k != "history"}
        trial.set_user_attr("record", json.loads(json.dumps(record)))
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
        study.tell(trial, self.objective(metrics, search))
        self.console.print(f"{_label(cell)}: {self.result_line(cell, metrics)} ({time.perf_counter() - started:.0f} s)")

    def _progress_hook(self, trial: optuna.Trial, inner: Callable | None) -> Callable:
        def hook(epoch: int, val: dict) -> None:
            try:
                trial.set_user_attr("progress", f"epoch {epoch + 1}, val AUROC {val['auroc']:.3f}")
            except UpdateFinishedTrialError:  # someone else closed our trial: stop, leave the checkpoint
                raise LostClaim(f"trial {trial.number} was closed by another worker") from None
            if inner is not None:
                inner(epoch, val)
        return hook

    def _cell(self, key: str) -> Cell | None:
        for cell in self.final_cells():
            if cell.key == key:
                return cell
        return None

    @staticmethod
    def _duplicate_of(study: optuna.Study, number: int, key: str) -> int | None:
        """Another trial of the same cell that wins over ours: a finished one, or an earlier one
        that is waiting or running (so of two simultaneous claims exactly one proceeds)."""
        for other in study.get_trials(deepcopy=False):
            if other.number == number or other.user_attrs.get("cell") != key:
                continue
            if other.state == TrialState.COMPLETE or (other.number < number and other.state in
                                                      (TrialState.WAITING, TrialState.RUNNING)):
                return other.number
        return None


KEPT_ON_RETRY = ("cell", "stage", "group", "params", "run_dir")


class LostClaim(RuntimeError):
    """Our trial was finished by another process while we ran it."""


def _failed(trials) -> dict[str, str]:
    """Cells whose attempt failed with an error and that are neither finished nor queued again
    (a trial whose worker died is re-queued by ``reap``: it is waiting, not failed) -> error."""
    settled = {t.user_attrs.get("cell") for t in trials
               if t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)}
    out = {}
    for trial in trials:
        cell, error = trial.user_attrs.get("cell"), trial.user_attrs.get("error")
        if (trial.state == TrialState.FAIL and cell and error and cell not in settled
                and not trial.user_attrs.get("duplicate_of")):
            out[cell] = error
    return out


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def _copy_run(donor: Path, path: Path, study: str) -> dict:
    """Copy a finished run directory (hard links where the file system allows: runs are never
    modified once finished) and note where it came from in its log; returns its metrics."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    tmp = path.with_name(f".{path.name}.copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(donor, tmp, copy_function=link)
    log = tmp / "log.txt"
    text = log.read_text() if log.is_file() else ""
    log.unlink(missing_ok=True)  # a new file, not the donor's (hard-linked) one
    log.write_text(text + f"{time.strftime('%Y-%m-%dT%H:%M:%S')} copied from {donor} for study {study} "
                   "(same run config; not trained again)\n")
    os.replace(tmp, path)
    return RunDir(path).load_metrics()


def requeue(study: optuna.Study, trial) -> None:
    """Enqueue a failed trial again: same params, same cell and run directory (so it resumes).
    Also Optuna's callback for trials whose heartbeat went stale."""
    attrs = {k: v for k, v in trial.user_attrs.items() if k in KEPT_ON_RETRY}
    attrs["retry_of"] = trial.number
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)


def suggest(trial: optuna.Trial, name: str, dist):
    """A value for ``name`` from an Optuna distribution (enqueued values are returned as given)."""
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def trial_sampler(search_seed: int, number: int) -> optuna.samplers.TPESampler:
    """The sampler that draws search trial ``number``: one seed per trial, so the search is
    reproducible with one worker and two workers asking at the same moment do not draw the same
    start-up configuration. The seed is mixed through numpy's SeedSequence: consecutive small
    seeds given straight to ``RandomState`` make correlated first draws (seeds 0 and 3 both start
    at 0.55 of the range), which put all four start-up trials of a search in 15% of a log range."""
    mixed = int(np.random.SeedSequence([search_seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=mixed, constant_liar=True)


def _label(cell: Cell) -> str:
    return f"{cell.dataset} {cell.fraction:.0%} {cell.backbone} {cell.method} seed {cell.seed}"


def _with_seed(cell: Cell, seed: int) -> Cell:
    import dataclasses
    config = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, seed=seed))
    return dataclasses.replace(cell, config=config, seed=seed)


def _with_patience(cell: Cell, patience: int) -> Cell:
    import dataclasses
    config = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, patience=patience))
    return dataclasses.replace(cell, config=config)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _heartbeat(storage: RDBStorage, trial_id: int):
    """Record a heartbeat every HEARTBEAT seconds while the trial runs (Optuna does this only
    inside ``study.optimize``)."""
    stop = threading.Event()

    def beat():
        while True:
            with contextlib.suppress(Exception):
                storage.record_heartbeat(trial_id)
            if stop.wait(HEARTBEAT):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
