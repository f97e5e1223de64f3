"""A study's Optuna storage: its URL, opening it (racing starters included), and waiting through
database outages.

:func:`open_storage` returns a :class:`RetryingStorage`, an Optuna ``RDBStorage`` whose every
call that reaches the database retries when the connection fails (server down, restarting, a
dropped connection): it waits with an exponential back-off from 1 s to 30 s, says so on stderr
each time, and carries on when the database answers again; after ``MEDPEFT_STORAGE_WAIT``
seconds of one outage (default 600) it gives up with :class:`StorageUnavailable`, which names
the real cause ("connection refused to localhost:5432"), not Optuna's "exceeding max length".
Optuna wraps it in its ``_CachedStorage`` as it does any ``RDBStorage``. Heartbeats are not
retried (a missed beat is repeated ``HEARTBEAT`` seconds later, and a heartbeat thread must
never block); for ``GRACE`` seconds after an outage this process judges no other worker's
heartbeat stale (theirs could not reach the database either). A database that cannot be
reached when the storage is *opened* is an error at once (most often a wrong URL).

Two starters on an empty PostgreSQL database race to create Optuna's tables (a
``UniqueViolation`` on ``pg_type_typname_nsp_index``); :func:`open_storage` retries the
creation, which then finds the tables. SQLite files are checked before they are opened
(:func:`sqlite_problem`): a 0-byte file starts the study afresh, a file that is not SQLite is
refused with what to do.
"""
from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from pathlib import Path

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from .supervise import storage_call
from .trials import GRACE, HEARTBEAT, requeue

WAIT_ENV = "MEDPEFT_STORAGE_WAIT"  # seconds one outage is waited out before giving up
DEFAULT_WAIT = 600.0
FIRST_DELAY, MAX_DELAY = 1.0, 30.0
OPEN_TRIES = 6  # tries to create Optuna's tables while other starters create them too
SQLITE_HEADER = b"SQLite format 3\x00"

# RDBStorage's methods that reach the database (the private ones are what _CachedStorage calls).
RETRIED = ("create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
           "get_study_id_from_name", "get_study_name_from_id", "get_study_directions", "get_study_user_attrs",
           "get_study_system_attrs", "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
           "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param", "get_trial_param",
           "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
           "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
           "_get_trials", "get_best_trial", "_get_best_trial_id", "_get_stale_trial_ids")


class StorageUnavailable(ValueError):
    """The database stayed unreachable longer than the storage waits (a ValueError: the command
    line shows it as one line and exits 2)."""


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


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url in ("sqlite://", "sqlite:///:memory:"):
        return None
    return Path(url[len("sqlite:///"):])


def sqlite_problem(url: str) -> str | None:
    """What is wrong with the SQLite file of ``url`` before it is opened: "missing", "empty"
    (0 bytes), "corrupt" (not a SQLite database); None when it looks like a SQLite database or
    the storage is no SQLite file."""
    path = sqlite_file(url)
    if path is None:
        return None
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    with open(path, "rb") as handle:
        return None if handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER else "corrupt"


def corrupt_message(path: Path) -> str:
    return (f"{path} is not a SQLite database (its first bytes are not SQLite's): move it away or delete it to "
            f"start over; `medpeft study run` then starts the study afresh and takes the finished run folders "
            f"in {path.parent / 'runs'} as they are, without training them again")


def patience() -> float:
    """Seconds one outage is waited out (``$MEDPEFT_STORAGE_WAIT``, default 600)."""
    text = os.environ.get(WAIT_ENV, "")
    try:
        return max(0.0, float(text)) if text else DEFAULT_WAIT
    except ValueError:
        raise ValueError(f"${WAIT_ENV} must be a number of seconds, got {text!r}") from None


def connection_cause(err: BaseException, url: str) -> str | None:
    """The cause in words when ``err`` (or an error it was raised from) is a failed connection
    to the database, else None: "connection refused to host:port", or the driver's first line."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, sa_exc.DBAPIError):
            text = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
            sqlite = url.startswith("sqlite")
            if not (err.connection_invalidated or (not sqlite and isinstance(err, (sa_exc.OperationalError,
                                                                                   sa_exc.InterfaceError)))
                    or (sqlite and "database is locked" in text)):
                return None
            if "connection refused" in str(err.orig).lower():
                parsed = make_url(url)
                return f"connection refused to {parsed.host or 'localhost'}:{parsed.port or 5432}"
            return text[:300]
        err = err.__cause__ or err.__context__
    return None


def _not_a_lost_connection(record: logging.LogRecord) -> bool:
    """Optuna logs a failed read with its SQL before falling back to another query; when the
    connection was lost, the retry's own line says it better."""
    text = record.getMessage().lower()
    return not any(words in text for words in ("closed the connection", "connection refused", "connection failed",
                                               "terminating connection"))


logging.getLogger("optuna.storages._rdb.storage").addFilter(_not_a_lost_connection)


def say(message: str) -> None:
    """A line about the storage on stderr (a worker's log, the terminal of `study run`)."""
    print(f"medpeft: {message}", file=sys.stderr, flush=True)


class RetryingStorage(RDBStorage):
    """An ``RDBStorage`` that waits through database outages (see the module's docstring)."""

    def __init__(self, url: str, **kwargs):
        self._local = threading.local()
        self.last_outage = -float("inf")  # time.monotonic() of the last failed call
        self.found_empty = False  # the SQLite file was 0 bytes when opened
        super().__init__(url, **kwargs)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_local", None)
        return state

    def __setstate__(self, state):
        self._local = threading.local()
        super().__setstate__(state)

    def _retrying(self, name: str, call, *args, **kwargs):
        if getattr(self._local, "busy", False):  # an inner call of a call that already retries
            return call(*args, **kwargs)
        self._local.busy = True
        try:
            return self._with_retries(name, call, args, kwargs)
        finally:
            self._local.busy = False

    def _with_retries(self, name: str, call, args, kwargs):
        started, delay, limit = None, FIRST_DELAY, patience()
        while True:
            try:
                with storage_call():  # a stop signal waits for the call to end (supervise.py)
                    result = call(*args, **kwargs)
            except UpdateFinishedTrialError:
                if started is not None and name == "set_trial_state_values" and self._took(*args, **kwargs):
                    return True  # our own attempt committed before its connection dropped
                raise
            except Exception as err:
                cause = connection_cause(err, self.url)
                if cause is None:
                    raise
                now = time.monotonic()
                self.last_outage = now
                started = now if started is None else started
                waited = now - started
                if waited >= limit:
                    raise StorageUnavailable(f"the study storage {shown_url(self.url)} was unreachable for "
                                             f"{waited:.0f} s (${WAIT_ENV}={limit:g}): {cause}") from None
                pause = min(delay, MAX_DELAY, limit - waited)
                say(f"study storage {shown_url(self.url)} unreachable ({cause}); retrying in {pause:.0f} s "
                    f"({waited:.0f} s of {limit:.0f} s waited)")
                time.sleep(pause)
                delay *= 2
                continue
            if started is not None:
                say(f"study storage {shown_url(self.url)} reachable again after {time.monotonic() - started:.0f} s")
            return result

    def _took(self, trial_id, state, values=None) -> bool:
        """Whether trial ``trial_id`` is already in ``state`` with ``values`` (our retried write)."""
        trial = RDBStorage.get_trial(self, trial_id)
        return trial.state == state and (values is None or list(trial.values or []) == list(values))

    def record_heartbeat(self, trial_id: int) -> None:
        """One try: a heartbeat thread must never block; the next beat comes HEARTBEAT s later."""
        try:
            super().record_heartbeat(trial_id)
        except Exception:
            self.last_outage = time.monotonic()
            raise

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """No trial is stale while other workers may still be catching up after an outage."""
        if time.monotonic() - self.last_outage < GRACE:
            return []
        return self._retrying("_get_stale_trial_ids", super()._get_stale_trial_ids, study_id)


def _retried(name: str):
    def method(self, *args, **kwargs):
        return self._retrying(name, getattr(super(RetryingStorage, self), name), *args, **kwargs)
    method.__name__ = name
    method.__doc__ = f"``RDBStorage.{name}``, retried through database outages."
    return method


for _name in RETRIED:
    if _name not in RetryingStorage.__dict__:
        setattr(RetryingStorage, _name, _retried(_name))


def _creation_race(err: BaseException) -> bool:
    """Optuna's tables being created by another starter at the same moment."""
    text = str(err)
    return isinstance(err, (sa_exc.IntegrityError, sa_exc.ProgrammingError)) and (
        "pg_type_typname_nsp_index" in text or "already exists" in text or "UniqueViolation" in text)


def open_storage(url: str) -> RetryingStorage:
    """The study's storage (:class:`RetryingStorage`, with heartbeats); an unreachable database
    or a file that is no database is one clear error."""
    if sqlite_problem(url) == "corrupt":
        raise ValueError(corrupt_message(sqlite_file(url)))
    path = sqlite_file(url)
    empty = path is not None and path.is_file() and path.stat().st_size == 0 and time.time() - path.stat().st_mtime > 5
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(OPEN_TRIES):
        try:
            storage = RetryingStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                                      heartbeat_stale_trial_callback=requeue)
            storage.found_empty = empty
            return storage
        except Exception as err:  # sqlalchemy's OperationalError, ArgumentError, ImportError of a driver
            if _creation_race(err) and attempt < OPEN_TRIES - 1:
                time.sleep(0.2 + random.random())  # another starter is creating the tables: they will be there
                continue
            if isinstance(err, sa_exc.DatabaseError) and path is not None and any(
                    words in str(err) for words in ("not a database", "malformed")):
                raise ValueError(corrupt_message(path)) from None
            cause = connection_cause(err, url) or str(err).splitlines()[0][:200]
            raise ValueError(f"cannot open the study storage {shown_url(url)}: {cause}") from None
    raise AssertionError("unreachable")


# -- what a storage holds, read without changing it (status, report, run's warnings) --------------
def study_exists(storage: RDBStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def finished_run_folders(work_dir: Path) -> int:
    """Finished run folders of final cells in ``<work_dir>/runs`` (search trials not counted)."""
    runs = work_dir / "runs"
    return sum(1 for path in runs.glob("*/metrics.json")) if runs.is_dir() else 0


def not_started(name: str, url: str, work_dir: Path, storage: RDBStorage | None = None) -> str | None:
    """Why the study ``name`` has nothing in its storage yet (a sentence saying what `run` will do),
    or None when it has. SQLite files are looked at without opening them; ``storage`` (opened
    already) is asked for the study by name otherwise."""
    runs = finished_run_folders(work_dir)
    kept = (f" and takes the {runs} finished run folder(s) in {work_dir / 'runs'} as they are, without training "
            f"them again" if runs else "")
    problem = sqlite_problem(url)
    if problem == "corrupt":
        raise ValueError(corrupt_message(sqlite_file(url)))
    if problem == "missing":
        return f"study {name}: not started ({sqlite_file(url)} does not exist); `medpeft study run` starts it{kept}"
    if problem == "empty":
        return (f"study {name}: {sqlite_file(url)} is empty (0 bytes), so nothing of the study is stored; "
                f"`medpeft study run` starts it afresh{kept}")
    if storage is not None and not study_exists(storage, name):
        return f"study {name}: not started (no study of that name in {shown_url(url)}); `medpeft study run` starts it"
    return None


def missing_runs(engine) -> list[str]:
    """The finished final cells of ``engine`` (an ``Engine``) whose run folder is gone (or has no
    ``metrics.json``); on a shared database only those run on this machine (the others' folders
    are on their machines)."""
    import socket

    host, local = socket.gethostname(), engine.url.startswith("sqlite")
    out = []
    for trial in engine.final.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if (trial.state.name == "COMPLETE" and attrs.get("run_dir") and (local or attrs.get("host") == host)
                and not (engine.work_dir / attrs["run_dir"] / "metrics.json").is_file()):
            out.append(attrs["run_dir"])
    return sorted(set(out))


def missing_runs_message(folders: list[str], work_dir: Path) -> str:
    shown = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
    return (f"{len(folders)} finished cell(s) have no run folder in {work_dir} ({shown}): their results stay in "
            f"the storage and are reported, but without their test predictions (approximate intervals) and "
            f"without adapter weights; `medpeft study run` does not run them again (restore the folders from a "
            f"backup to get them back)")


def started_engine(kind, study, work_dir: Path, url: str | None, console):
    """(the study's engine, None) when the study is in its storage, else (None, why not, from
    :func:`not_started`): a missing or empty SQLite file is not opened (opening would create it),
    a corrupt one is a ValueError. ``kind`` is a ``StudyKind`` (its ``engine`` class)."""
    why = not_started(study.name, storage_url(work_dir, url), work_dir)
    if why is not None:
        return None, why
    engine = kind.engine(study, work_dir, url, console=console)
    why = not_started(study.name, engine.url, work_dir, engine.storage)
    return (None, why) if why else (engine, None)
