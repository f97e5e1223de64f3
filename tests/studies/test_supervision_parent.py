"""The parent `medpeft study run` supervises its workers (issue 28, item 4), with real processes
on tiny synthetic studies: a SIGKILLed parent leaves no worker behind; SIGINT or SIGTERM to the
parent alone stops its workers cleanly and the next run resumes the interrupted run; a second
`run` while the first lives starts no workers; failed workers are named with their error and log
path, and the run exits non-zero."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from rich.console import Console

from medpeft.studies.engine import Engine
from medpeft.studies.runner import run_study
from medpeft.studies.spec import load_study

from .conftest import write_study

QUIET = Console(quiet=True)
# real `study run` processes that train: tens of seconds each on an idle machine, minutes on a
# loaded one; `.ci/run` runs them after the default suite (`pytest -m slow`)
pytestmark = pytest.mark.slow
# Seconds: a run starts its workers and they train in seconds on an idle machine; the bounds are
# generous for a loaded one (under `nice -n 19` beside a long job a start can take a minute).
STARTUP = 300
STOPPED = 60  # a stopped worker queues its trial again and exits (~1 s idle)
LONG = dict(methods=[{"name": "fft", "label": "FFT"}],
            data=[{"spec": "synthetic-cxr?n=192&n_val=32&n_test=32&size=16", "label": "synth"}],
            train={"epochs": 40, "batch_size": 16, "n_bootstrap": 0, "keep_checkpoint": True})


def workers_of(path) -> list[int]:
    """Pids of the live `study worker` processes of the study file ``path`` (whoever their parent)."""
    wanted = f"study\0worker\0{path}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if wanted in cmdline and state != "Z":
                pids.append(int(entry.name))
    return pids


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_leftovers():
    """A failing test leaves no run behind: its parents are killed (and their workers follow)."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_run(path, *args, log=None) -> subprocess.Popen:
    """`medpeft study run` in its own process group (a signal to it reaches the parent alone)."""
    out = open(log or Path(path).parent / "parent.out", "w")
    STARTED.append(subprocess.Popen([sys.executable, "-m", "medpeft.cli", "study", "run", str(path), *args],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "COLUMNS": "400"}))
    return STARTED[-1]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def engine_of(path) -> Engine:
    return Engine(load_study(path), Path(path).parent, console=QUIET)


def running_trials(path) -> list:
    return engine_of(path).final.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def training(path, parent: subprocess.Popen, workers: int = 1) -> None:
    """Wait until ``workers`` workers run and a cell has written its first checkpoint."""
    folder = Path(path).parent
    wait_for(lambda: parent.poll() is not None or (len(workers_of(path)) >= workers and any(
        (folder / "runs").glob("*/checkpoint-last.pt"))), STARTUP, "the workers' first checkpoint")
    assert parent.poll() is None, (folder / "parent.out").read_text()


def test_a_sigkilled_parent_leaves_no_worker_behind(tmp_path):
    path = write_study(tmp_path / "orphans", name="orphans", fractions=[0.5, 1.0], **LONG)
    parent = start_run(path, "--workers", "2")
    training(path, parent, workers=2)
    assert len(workers_of(path)) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not workers_of(path), STOPPED, "the workers to stop after their parent died")
    # they stopped as on Ctrl-C: their cells are queued again, none is left RUNNING
    assert running_trials(path) == []
    assert engine_of(path).progress().waiting == 2


def test_sigint_or_sigterm_to_the_parent_alone_stops_its_workers_and_the_next_run_resumes(tmp_path):
    path = write_study(tmp_path / "stop", name="stop", fractions=[1.0], **LONG)
    folder = tmp_path / "stop"
    for sig in (signal.SIGINT, signal.SIGTERM):
        parent = start_run(path)
        training(path, parent)
        wait_for(lambda: running_trials(path), 30, "the cell's trial to run")
        os.kill(parent.pid, sig)  # the parent alone: its own process group, the workers are not in it
        assert parent.wait(timeout=STOPPED + 30) == 130
        shown = (folder / "parent.out").read_text()
        assert "stopped 1 worker(s); their cells are queued again" in shown, shown
        assert workers_of(path) == []
        assert running_trials(path) == []  # queued again by the worker itself, not left to the reaper
        progress = engine_of(path).progress()
        assert (progress.done, progress.waiting, progress.failed) == (0, 1, 0)
    assert run_study(path, console=QUIET) == 0
    all_trials = engine_of(path).final.get_trials(deepcopy=False)
    assert [t.state for t in all_trials].count(TrialState.COMPLETE) == 1
    assert [t.user_attrs.get("error") for t in all_trials if t.state == TrialState.FAIL] == ["interrupted"] * 2
    log = next((folder / "runs").glob("*/log.txt")).read_text()
    assert log.count("start:") == 1 and "resumed after epoch" in log  # resumed, never restarted


def test_a_second_run_while_the_first_lives_starts_no_workers(tmp_path):
    path = write_study(tmp_path / "twice", name="twice", fractions=[0.5, 1.0], **LONG)
    first = start_run(path, "--workers", "1")
    try:
        training(path, first)
        second = subprocess.run([sys.executable, "-m", "medpeft.cli", "study", "run", path, "--workers", "2"],
                                capture_output=True, text=True, timeout=STARTUP, env={**os.environ, "COLUMNS": "400"})
        shown = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 2, shown
        assert f"study twice is already being run here by `medpeft study run` (pid {first.pid} on" in shown, shown
        assert "1 worker(s)" in shown and "Traceback" not in shown
        assert len(workers_of(path)) == 1 and first.poll() is None  # the first run goes on untouched
    finally:
        os.kill(first.pid, signal.SIGTERM)
        first.wait(timeout=STOPPED + 30)
    assert workers_of(path) == []


def test_failed_workers_are_named_with_their_error_and_log_and_the_run_fails(tmp_path):
    """A damaged study folder that only the workers touch (their claim lock is a directory):
    every worker exits 2 at its first claim; the parent names each with its log's last lines."""
    folder = tmp_path / "broken"
    path = write_study(folder, name="broken")
    (folder / ".claim.lock").mkdir()
    parent = start_run(path, "--workers", "2")
    assert parent.wait(timeout=STARTUP) == 1
    shown = (folder / "parent.out").read_text()
    flat = " ".join(shown.split())
    assert "0/4 cells done" in flat
    for index in (1, 2):
        log = folder / "logs" / f"worker-{index}.log"
        assert f"worker {index} exited with code 2; log {log}, last lines:" in flat, shown
        assert "it is a folder, where a file is needed" in log.read_text()
    assert flat.count(".claim.lock: it is a folder, where a file is needed") == 2  # each worker's own error, quoted
    assert "2 worker(s) failed (0/4 cells done)" in flat
    assert workers_of(path) == []


def test_a_worker_killed_by_the_system_is_named_with_its_signal(tmp_path):
    path = write_study(tmp_path / "oom", name="oom", fractions=[1.0], **LONG)
    parent = start_run(path)
    training(path, parent)
    (worker,) = workers_of(path)
    os.kill(worker, signal.SIGKILL)  # what the out-of-memory killer does
    assert parent.wait(timeout=STOPPED) == 1
    flat = " ".join((tmp_path / "oom" / "parent.out").read_text().split())
    log = tmp_path / "oom" / "logs" / "worker-1.log"
    assert f"worker 1 was killed by SIGKILL (out of memory, or killed by hand); log {log}" in flat, flat
