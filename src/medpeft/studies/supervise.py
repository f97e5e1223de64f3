"""Supervising the local workers of ``medpeft study run``, and who a worker is.

The parent side (``studies/runner.py`` ``run_study``):

- :class:`RunLock`: one ``study run`` per study folder and machine. A live parent holds an
  ``flock`` on ``<work dir>/.run.lock`` (with its pid, host, start and worker count written in
  it); a second ``run`` is refused with who holds it (:class:`StudyRunning`, exit 2) instead
  of starting more workers. The kernel drops the lock when the parent dies, however it dies.
- :func:`plan_workers`: ``--workers`` is capped to the cores this process may use and to the
  available memory at :data:`WORKER_MEMORY` per worker, with the reason.
- :class:`Workers`: starts the worker processes (the storage URL in ``$MEDPEFT_STORAGE``, never
  on a command line, where ``ps`` shows it), holds the write end of a pipe whose read end each
  worker watches, forwards a stop (SIGINT) to them when the parent is interrupted (SIGINT or
  SIGTERM, :func:`interrupts`), and names each failed worker with the end of its log.
- :func:`poll_interval`: how often the parent reads the storage to show progress, paced so that
  watching costs at most :data:`WATCH_SHARE` of a core.

The worker side (``runner.run_worker``, :func:`supervised`): SIGINT and SIGTERM raise one
KeyboardInterrupt (its trial is queued again, as on Ctrl-C; further signals are ignored so the
clean-up is not cut short), never inside a storage call (:func:`storage_call`: it is raised when
the call returns); on Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` makes the kernel stop
the worker when its parent dies (SIGKILL included); everywhere the pipe's end-of-file does the
same (the parent's end closes when it dies).

Identity (:func:`identity`, :func:`liveness`): a trial records its worker's host, pid, a random
token, the pid's start time and the PID namespace (boot id + ``/proc/self/ns/pid``). A RUNNING
trial's worker is judged dead from its pid only when it ran in this very PID namespace; one from
another container with the same hostname (or from before namespaces were recorded) is judged by
Optuna's heartbeat instead (``studies/trials.py`` ``reap_dead``).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

STORAGE_ENV = "MEDPEFT_STORAGE"  # the storage URL for `study` commands and the workers `study run` starts
PARENT_FD_ENV = "MEDPEFT_PARENT_FD"  # a worker's end of the pipe its `study run` holds
WORKER_MEMORY = 600 * 2**20  # bytes one worker of a small study takes (torch, a model, a batch), measured ~570 MiB
STOP_WAIT = 60.0  # seconds a stopped worker gets to queue its trial again before it is killed
LOG_LINES = 8  # lines of a failed worker's log shown
TOKEN = uuid.uuid4().hex  # this process's worker token: unique across machines and containers
PR_SET_PDEATHSIG = 1


# -- identity --------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def namespace() -> str:
    """This process's PID namespace, unique on every machine and boot ("" where there is none)."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{_read('/proc/sys/kernel/random/boot_id')}/{ns}"


def start_time(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot; "" where unknown): tells a reused pid."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[-1].split()[19] if stat else ""


def identity() -> dict:
    """Who this worker is, recorded on each trial it runs (``host:pid`` is for people)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "token": TOKEN, "ns": namespace(), "pid_start": start_time(pid)}


def liveness(attrs: dict) -> bool | None:
    """Whether the worker that recorded ``attrs`` (:func:`identity`) lives: True or False when it
    ran in this PID namespace on this host, None when that cannot be told from here (another
    machine or container, or a trial from before namespaces were recorded: the heartbeat tells)."""
    if (attrs.get("host") != socket.gethostname() or not attrs.get("pid") or "ns" not in attrs
            or attrs["ns"] != namespace()):
        return None
    pid = int(attrs["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = attrs.get("pid_start")
    return not (started and start_time(pid) and start_time(pid) != started)  # a reused pid is someone else


def running_line(attrs: dict) -> str:
    """One running trial for ``study status``: where, and whether its worker is dead."""
    where = f"{attrs.get('label', attrs.get('cell'))} on {attrs.get('worker')}"
    if liveness(attrs) is False:
        return (f"dead worker: {where} (its process is gone; last {attrs.get('progress', 'starting')}); "
                f"the next `study run` or any worker queues the cell again")
    return f"running: {where} — {attrs.get('progress', 'starting')}"


# -- how many workers ------------------------------------------------------------------------
def cores() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available for new processes (None where unknown)."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def plan_workers(requested: int, per_worker: int = WORKER_MEMORY) -> tuple[int, str]:
    """How many workers to start for ``--workers requested``, and why fewer ("" when all)."""
    limits = [(cores(), f"{cores()} core(s) for this process (more workers than cores only slow each other)")]
    memory = available_memory()
    if memory is not None:
        limits.append((max(1, memory // per_worker), f"{memory / 2**30:.1f} GiB of memory available, at "
                                                     f"~{per_worker / 2**20:.0f} MiB per worker"))
    allowed, why = min(limits)
    if requested <= allowed:
        return requested, ""
    return allowed, f"--workers {requested} capped to {allowed}: {why}"


# -- one run per study folder ----------------------------------------------------------------
class StudyRunning(ValueError):
    """Another live `study run` of this study folder on this machine holds its lock."""


class RunLock:
    """``<work dir>/.run.lock``, held with ``flock`` while a ``study run`` lives."""

    def __init__(self, work_dir: Path, name: str, workers: int):
        self.path, self.name, self.workers, self.handle = Path(work_dir) / ".run.lock", name, workers, None

    def __enter__(self) -> RunLock:
        if fcntl is None:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise StudyRunning(
                f"study {self.name} is already being run here by `medpeft study run` ({holder}; lock {self.path}): "
                f"a second run would only add workers. Wait for it, stop it (`kill <pid>`: its workers stop and the "
                f"next run resumes their cells), or add a worker on purpose with `medpeft study worker`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "workers": self.workers}))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the lock


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on {info['host']}, started {started}, {info['workers']} worker(s)"
    except (ValueError, KeyError, TypeError):
        return "a process that has not written its pid yet"


# -- the parent's workers --------------------------------------------------------------------
@dataclass
class Worker:
    index: int
    proc: subprocess.Popen
    log: Path
    offset: int  # the log's size when this run started it: its lines of this run follow

    def failure(self) -> str:
        """Why this worker failed ("" when it exited with 0): its exit and the end of its log."""
        code = self.proc.returncode
        if code == 0 or code is None:
            return ""
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            if code == -signal.SIGKILL:
                how += " (out of memory, or killed by hand)"
        else:
            how = f"exited with code {code}"
        with contextlib.suppress(OSError), open(self.log, "rb") as handle:
            handle.seek(self.offset)
            lines = [line for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
            tail = "\n".join(f"    {line}" for line in lines[-LOG_LINES:])
            return f"worker {self.index} {how}; log {self.log}" + (f", last lines:\n{tail}" if tail else " (empty)")
        return f"worker {self.index} {how}; log {self.log}"


@dataclass
class Workers:
    """The worker processes of one ``study run``, tied to this process by a pipe."""
    items: list[Worker] = field(default_factory=list)

    def __post_init__(self):
        self._read, self._write = os.pipe() if fcntl is not None else (None, None)

    def start(self, command: list[str], logs: Path, count: int, storage: str | None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop(STORAGE_ENV, None)
        if storage:
            env[STORAGE_ENV] = storage  # not on the command line: `ps` shows those to everyone
        if self._read is not None:
            env[PARENT_FD_ENV] = str(self._read)
        for index in range(1, count + 1):
            path = logs / f"worker-{index}.log"
            with open(path, "ab") as log:
                offset = log.tell()
                proc = subprocess.Popen([*command, "--id", str(index)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                        pass_fds=() if self._read is None else (self._read,))
            self.items.append(Worker(index, proc, path, offset))
        if self._read is not None:
            os.close(self._read)
            self._read = None

    @property
    def procs(self) -> list[subprocess.Popen]:
        return [w.proc for w in self.items]

    def stop(self, wait: float = STOP_WAIT) -> int:
        """Ask every live worker to stop (SIGINT: its trial is queued again), wait up to ``wait``
        seconds, kill what is left; returns how many were still running."""
        live = [w.proc for w in self.items if w.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + wait
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return len(live)

    def failures(self) -> list[str]:
        return [text for text in (w.failure() for w in self.items) if text]

    def close(self) -> None:
        for fd in (self._read, self._write):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read = self._write = None


@contextlib.contextmanager
def interrupts():
    """In the parent: SIGTERM interrupts like SIGINT (a KeyboardInterrupt), so ``kill <pid>``
    stops the workers as Ctrl-C does (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


# -- the worker's side -----------------------------------------------------------------------
@contextlib.contextmanager
def supervised():
    """In a worker: the first SIGINT or SIGTERM raises KeyboardInterrupt (the trial is queued
    again), later ones are ignored; the worker stops when the ``study run`` that started it dies."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = []

    def stop(signum, frame):
        if not stopping:
            stopping.append(signum)
            if _CALL.depth:  # inside a storage call: raised when it returns (storage_call)
                _CALL.pending = True
                return
            raise KeyboardInterrupt

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _die_with_parent()
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


class _CALL:
    depth = 0  # storage calls in progress on the main thread
    pending = False  # a stop signal arrived during one


@contextlib.contextmanager
def storage_call():
    """Around one call into the study storage (``storage.RetryingStorage``): a stop signal that
    :func:`supervised` receives meanwhile is raised as KeyboardInterrupt when the call returns,
    not inside it, so a database write is never cut half-way (issue 28: one SIGINT in 13 landed
    inside a SQLite write and left the database locked for minutes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _CALL.depth += 1
    try:
        yield
    finally:
        _CALL.depth -= 1
        if not _CALL.depth and _CALL.pending:
            _CALL.pending = False
            raise KeyboardInterrupt


def _die_with_parent() -> None:
    fd = os.environ.pop(PARENT_FD_ENV, None)
    if fd is None:
        return  # started by hand: no parent to follow
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    def watch():
        with contextlib.suppress(OSError):
            while os.read(int(fd), 1):
                pass
        os.kill(os.getpid(), signal.SIGTERM)  # end of file: the parent is gone (also if it died before prctl)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


WATCH_SHARE = 0.02  # the most of one core `study run` spends watching its workers (poll_interval)


def poll_interval(cpu_seconds: float, shortest: float, share: float = WATCH_SHARE, longest: float = 30.0) -> float:
    """Seconds until the next look at the storage after one that took ``cpu_seconds`` of this
    process's CPU: at least ``shortest``, long enough that watching uses at most ``share`` of a
    core (issue 25: the watcher took ~9.5% of a core polling every 2 s), at most ``longest``."""
    return min(longest, max(shortest, cpu_seconds / share))
