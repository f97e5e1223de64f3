"""One trial of a study in its Optuna storage: claimed once, run with a heartbeat, closed in the
state it earned, and queued again if its worker dies. The engine (:mod:`.engine`) decides which
trial to claim and what its cell is; this module holds what keeps a trial safe.

Claims: Optuna's WAITING -> RUNNING update claims a trial atomically on PostgreSQL; on SQLite
:func:`claim_lock` serialises claims. A cell enqueued twice (by two starters at once) is run
once: :func:`duplicate_of` finds the copy that yields.

Kill-safe: a worker killed at any point (SIGKILL included) leaves its trial RUNNING. A trial
records who runs it (``supervise.identity``: host, pid, a random token, the PID namespace). A
dead worker of this machine's PID namespace is recognised at once (its process is gone,
:func:`reap_dead`); one of another machine or container (same hostname, other namespace)
by Optuna's heartbeat (no beat for ``GRACE`` seconds; :func:`heartbeat` beats while a trial
runs). A final cell's trial is then failed and enqueued again with the same cell, params and run
directory (:func:`requeue`), so the run resumes from its last checkpoint. A search trial whose
worker died on this machine (or was interrupted) goes back to the queue as itself
(:func:`resume_in_place`): same number, params, intermediate values and pruner rungs, so its steps
continue from the validations it reached, the pruner judges it as if it had never stopped, and
later trials draw what they would have drawn uninterrupted (samplers and Hyperband brackets go by
trial number). A failed trial keeps its error and does not stop the study (:func:`run_trial`);
the next ``study run`` retries it.

Each training attempt records its torch thread counts (``threads``, ``interop_threads``:
:func:`thread_setup`) in its trial and record: float sums depend on them, so results repeat bit
for bit only at the same counts (docs/studies.md, "What repeats exactly").

A validation split with one class (no finding with both classes) has no AUROC; a fine-tuning run
then chooses its epoch by validation loss (``train/finetuning.py`` ``selection``). A final cell
on such data is still a result: its trial completes with the value -inf (no validation AUROC)
and a note saying why. A search cannot rank its trials without a validation AUROC (their losses
are not comparable with AUROCs, nor, under searched loss settings, with each other), so a search
trial stops at its first validation with :class:`NoValidationAUROC`: the trial fails with a
message naming the data and fraction, the search is marked blocked with it (:data:`BLOCKED`,
in the search study, so every worker sees it), no further trial of it is started, its cells are
listed as failed with that message, and the rest of the study goes on. The next ``study run``
tries the search once more (the data may have been fixed).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import threading
import time
from pathlib import Path
from typing import Callable

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from ..runtime import RunDir, RunInUse
from .reuse import copy_run
from .spec import Cell
from .supervise import identity, liveness

HEARTBEAT = 20  # seconds between heartbeats of a running trial
GRACE = 120  # a trial with no heartbeat for this long is considered dead (other machines)
KEPT_ON_RETRY = ("cell", "stage", "group", "params", "run_dir", "threads", "interop_threads")
THREADS = ("threads", "interop_threads")  # torch's thread counts, recorded per trial (thread_setup)
VALIDATED = "validated"  # a search trial's user attr: the epochs (0-based) it reported, in order (search.py)
KEPT_IN_PLACE = (*KEPT_ON_RETRY, VALIDATED, "retry_of", "resumed", "interrupted")  # a search trial put back
BLOCKED = "blocked"  # a search study's user attr: why no trial of it can be ranked ("" or absent: none)
NO_AUROC_NOTE = ("no validation AUROC (the validation split has one class): the best epoch was chosen by "
                 "validation loss; the trial's value is -inf")


class LostClaim(RuntimeError):
    """Our trial was finished by another process while we ran it."""


class NoValidationAUROC(Exception):
    """A search trial's validation split has no AUROC (one class): the search cannot rank it."""


def no_auroc_message(cell: Cell) -> str:
    return (f"the validation split of {cell.dataset} at fraction {cell.fraction:g} has one class (no label with "
            f"both classes): a search needs a validation AUROC to compare its trials, and a validation loss is "
            f"not comparable with it; give the validation split images of every class, or run {cell.method} "
            f"without a search space (a grid cell chooses its epoch by validation loss)")


def auroc_objective(metrics: dict, search: bool) -> float:
    """A classifier trial's value: a search trial's best validation AUROC (none:
    :class:`NoValidationAUROC`), a final cell's validation AUROC (-inf when it has none)."""
    if not search:
        return metrics["val"]["auroc"] if _defined(metrics["val"]["auroc"]) else -math.inf
    scores = [h["val_auroc"] for h in metrics["history"] if _defined(h.get("val_auroc"))]
    if not scores:
        raise NoValidationAUROC()
    return max(scores)


def shown_auroc(value) -> str:
    return f"{value:.4f}" if _defined(value) else "none (one class: epoch chosen by validation loss)"


def _defined(value) -> bool:
    """An AUROC that exists (metrics read from strict JSON may have ``null`` for NaN)."""
    return value is not None and not math.isnan(value)


def blocked(search: optuna.Study) -> str:
    """Why the search ``search`` cannot go on (:class:`NoValidationAUROC`), or ""."""
    return search.user_attrs.get(BLOCKED) or ""


@contextlib.contextmanager
def claim_lock(url: str, work_dir: Path):
    """Serialise claims on SQLite: Optuna pops a WAITING trial with SELECT ... FOR UPDATE, which
    PostgreSQL honours but SQLite ignores, so two local workers could both pop the same trial
    (seen in a real run). SQLite storage is one machine's file, so a file lock beside it closes
    the race; other databases claim atomically by themselves."""
    if not url.startswith("sqlite") or fcntl is None:
        yield
        return
    with open(work_dir / ".claim.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def duplicate_of(study: optuna.Study, number: int, key: str) -> int | None:
    """Another trial of the same cell that wins over ours: a finished one, or an earlier one
    that is waiting or running (so of two simultaneous claims exactly one proceeds)."""
    for other in study.get_trials(deepcopy=False):
        if other.number == number or other.user_attrs.get("cell") != key:
            continue
        if other.state == TrialState.COMPLETE or (other.number < number and other.state in
                                                  (TrialState.WAITING, TrialState.RUNNING)):
            return other.number
    return None


def run_trial(engine, study: optuna.Study, trial: optuna.Trial, cell: Cell, run_dir: Path,
              on_validation: Callable | None, search: bool = False) -> None:
    """Run a claimed trial's cell into ``<work dir>/<run_dir>`` and close the trial: COMPLETE
    with its record, PRUNED, or FAIL with its error (an interrupted one is queued again). What a
    cell is comes from ``engine`` (an :class:`~.engine.Engine`): ``donor``, ``train_cell``,
    ``objective``, ``result_line``."""
    for name, value in {**identity(), "worker": engine.worker,
                        "run_dir": str(run_dir), "started": time.time(), "cell": cell.key,
                        "label": label(cell)}.items():
        trial.set_user_attr(name, value)
    path = engine.work_dir / run_dir
    started, setup = time.perf_counter(), {}  # setup: the thread counts that trained the run (thread_setup)
    with heartbeat(engine.storage, trial._trial_id):
        try:
            run = RunDir(path)
            donor = None if search or path.exists() else engine.donor(cell)
            if donor is not None:
                metrics = copy_run(donor, path, engine.study.name)
                trial.set_user_attr("reused_from", str(donor))
            elif run.is_complete():
                metrics = run.load_metrics()
                setup = {k: trial.user_attrs[k] for k in THREADS if k in trial.user_attrs}
            else:
                setup = thread_setup(trial.user_attrs)
                for name, value in setup.items():
                    trial.set_user_attr(name, value)
                metrics = engine.train_cell(cell, path, _progress_hook(trial, on_validation, needs_auroc=search))
            value = engine.objective(metrics, search)
        except RunInUse:  # another local worker runs this cell under another trial
            trial.set_user_attr("duplicate_of", "the run directory is in use by another worker")
            study.tell(trial, state=TrialState.FAIL)
            return
        except LostClaim as lost:
            engine.console.print(f"{label(cell)}: {lost}; its run directory keeps the last checkpoint")
            return
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("note", str(pruned))
            study.tell(trial, state=TrialState.PRUNED)
            engine.console.print(f"{label(cell)}: {pruned}")
            return
        except NoValidationAUROC:  # the search cannot rank this trial, nor any other of it
            message = no_auroc_message(cell)
            trial.set_user_attr("error", message)
            study.tell(trial, state=TrialState.FAIL)
            study.set_user_attr(BLOCKED, message)
            engine.console.print(f"{label(cell)} failed: {message}")
            return
        except KeyboardInterrupt:
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            retry(study, engine.storage, frozen, "interrupted")  # the next `study run` resumes it
            raise
        except Exception as err:  # recorded with its error; the study goes on
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr("error", message[:2000])
            study.tell(trial, state=TrialState.FAIL)
            engine.console.print(f"{label(cell)} failed: {message}")
            return
    record = {**{k: v for k, v in metrics.items() if k != "history"}, **setup}
    trial.set_user_attr("record", json.loads(json.dumps(record)))
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
    if value == -math.inf:
        trial.set_user_attr("note", NO_AUROC_NOTE)
    study.tell(trial, value)
    engine.console.print(f"{label(cell)}: {engine.result_line(cell, metrics)} "
                         f"({time.perf_counter() - started:.0f} s)")


def _progress_hook(trial: optuna.Trial, inner: Callable | None, needs_auroc: bool = False) -> Callable:
    """Record each validation in the trial (``study status``), then call ``inner``; a validation
    chosen by loss (``val`` has ``loss``: no AUROC) stops a trial that ``needs_auroc`` (a search's)."""
    def hook(epoch: int, val: dict) -> None:
        shown = f"val loss {val['loss']:.3f} (no val AUROC)" if "loss" in val else f"val AUROC {val['auroc']:.3f}"
        try:
            trial.set_user_attr("progress", f"epoch {epoch + 1}, {shown}")
        except UpdateFinishedTrialError:  # someone else closed our trial: stop, leave the checkpoint
            raise LostClaim(f"trial {trial.number} was closed by another worker") from None
        if needs_auroc and "loss" in val:
            raise NoValidationAUROC()
        if inner is not None:
            inner(epoch, val)
    return hook


def reap_dead(study: optuna.Study, storage: RDBStorage) -> int:
    """Fail the RUNNING trials of ``study`` whose worker is known dead and enqueue them again:
    those whose worker ran in this machine's PID namespace and whose process is gone
    (``supervise.liveness``); fail those of other machines and containers whose heartbeat went
    stale (Optuna's callback re-queues them). Returns how many were reaped by their process."""
    reaped = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _alive(trial.user_attrs):
            reaped += retry(study, storage, trial, "worker process died")
    with contextlib.suppress(Exception):
        optuna.storages.fail_stale_trials(study)  # other machines and containers: no heartbeat for GRACE s
    return reaped


def requeue(study: optuna.Study, trial) -> None:
    """Enqueue a failed trial again: same params, same cell and run directory (so it resumes).
    Also Optuna's callback for trials whose heartbeat went stale (it has failed them). A failed
    search trial cannot continue as itself, so its copy restarts from scratch in a run directory
    of its own (a resumed run under a new trial would report its late epochs as early steps)."""
    kept = KEPT_ON_RETRY if not is_search(study) else [k for k in KEPT_ON_RETRY if k not in ("run_dir", *THREADS)]
    attrs = {k: v for k, v in trial.user_attrs.items() if k in kept}
    attrs["retry_of"] = trial.number
    study.enqueue_trial(dict(trial.params), user_attrs=attrs)


def retry(study: optuna.Study, storage: RDBStorage, trial, why: str) -> bool:
    """Queue a RUNNING trial whose run stopped (its worker died, or was interrupted) to be resumed:
    a search trial goes back to the queue as itself (:func:`resume_in_place`); a final cell's
    trial is failed with ``why`` and enqueued again as a new trial (:func:`requeue`: its cell
    is its identity). False when another worker got there first."""
    if is_search(study):
        return resume_in_place(study, trial, why)
    try:
        storage.set_trial_user_attr(trial._trial_id, "error", why)
        study.tell(trial.number, state=TrialState.FAIL)
    except (UpdateFinishedTrialError, ValueError, RuntimeError):  # finished by another worker meanwhile
        return False
    requeue(study, trial)
    return True


def is_search(study: optuna.Study) -> bool:
    return ":search:" in study.study_name  # search.open_search names them so


def resume_in_place(study: optuna.Study, trial, why: str) -> bool:
    """Put the RUNNING search trial ``trial`` back in the queue as itself: WAITING again, with its
    number, params, intermediate values and pruner rungs (system attrs), so the next worker to
    ask resumes it (Optuna returns a suggested param as it is) and neither the pruner nor the
    sampler of any later trial sees that it stopped. One atomic UPDATE, only while the trial is
    still in the attempt ``trial`` shows (RUNNING, same start): of two reapers one moves it, and
    a trial claimed again meanwhile is left alone. Its heartbeat and the dead attempt's user
    attrs (worker identity, progress; all but :data:`KEPT_IN_PLACE`) go with it, so no one
    takes the next attempt for dead before it records its own. Optuna's storage API has no
    RUNNING -> WAITING compare-and-set, hence its tables (pinned Optuna; tests/studies/
    test_search_retry.py)."""
    backend = getattr(study._storage, "_backend", study._storage)  # under Optuna's _CachedStorage
    table, trial_id = models.TrialModel, trial._trial_id
    with _create_scoped_session(backend.scoped_session) as session:
        moved = session.query(table).filter(
            table.trial_id == trial_id, table.state == TrialState.RUNNING,
            table._datetime_start_utc.in_(_stored_times(trial.datetime_start))
        ).update({table.state: TrialState.WAITING}, synchronize_session=False)
        if moved:
            session.query(models.TrialHeartbeatModel).filter(
                models.TrialHeartbeatModel.trial_id == trial_id).delete(synchronize_session=False)
            attrs = models.TrialUserAttributeModel
            session.query(attrs).filter(attrs.trial_id == trial_id, attrs.key.notin_(KEPT_IN_PLACE)).delete(
                synchronize_session=False)
    if not moved:
        return False
    with contextlib.suppress(Exception):  # a note for people; the trial may be claimed again already
        backend.set_trial_user_attr(trial_id, "interrupted", why)
        backend.set_trial_user_attr(trial_id, "resumed", int(trial.user_attrs.get("resumed", 0)) + 1)
    return True


def _stored_times(start: datetime.datetime | None) -> list:
    """A FrozenTrial's local start time as RDBStorage stores it (naive UTC), both readings of an
    hour that a clock change repeats."""
    if start is None:
        return [None]
    return [start.replace(fold=fold).astimezone(datetime.timezone.utc).replace(tzinfo=None) for fold in (0, 1)]


def thread_setup(kept: dict) -> dict:
    """This attempt's torch thread counts (``threads``, ``interop_threads``) as a trial records
    them: a number, or ``"2, then 1"`` when an earlier attempt of the run (``kept``: its trial's
    user attrs) trained under another count (a resumed run then differs from an uninterrupted one)."""
    out = {}
    for name, now in (("threads", torch.get_num_threads()), ("interop_threads", torch.get_num_interop_threads())):
        before = kept.get(name)
        if before in (None, now) or str(before).endswith(f", then {now}"):
            out[name] = now if before in (None, now) else before
        else:
            out[name] = f"{before}, then {now}"
    return out


def failed_cells(trials) -> dict[str, str]:
    """Cells whose attempt failed with an error and that are neither finished nor queued again
    (a trial whose worker died is re-queued by ``reap_dead``: it is waiting, not failed) -> error."""
    settled = {t.user_attrs.get("cell") for t in trials
               if t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)}
    out = {}
    for trial in trials:
        cell, error = trial.user_attrs.get("cell"), trial.user_attrs.get("error")
        if (trial.state == TrialState.FAIL and cell and error and cell not in settled
                and not trial.user_attrs.get("duplicate_of")):
            out[cell] = error
    return out


def label(cell: Cell) -> str:
    return (f"{cell.dataset} {cell.fraction:.0%} {cell.backbone} {cell.method} seed {cell.seed}"
            + ("" if cell.subset is None else f" subset {cell.subset}"))


def _alive(attrs: dict) -> bool:
    """False only when the trial's worker is known dead: it ran in this PID namespace (same host,
    same ``ns``; not merely the same hostname, which containers share) and its process is gone."""
    return liveness(attrs) is not False


@contextlib.contextmanager
def heartbeat(storage: RDBStorage, trial_id: int):
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
