"""Who a worker is, what `ps` shows and how many workers run (issue 28, item 6): a trial of
another PID namespace on this host (a container with the same hostname) is not reaped while its
heartbeat is fresh, only by its heartbeat; a dead or reused pid of this namespace is; the storage
URL (a database password) is on no worker's command line; `--workers 64` is capped with the
reason; `$MEDPEFT_STORAGE` stands for `--storage`."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from optuna.trial import TrialState
from rich.console import Console

from medpeft.cli import main
from medpeft.studies.engine import Engine
from medpeft.studies.runner import prepare
from medpeft.studies.spec import load_study
from medpeft.studies.supervise import STORAGE_ENV, identity, liveness, namespace, plan_workers, running_line

from .conftest import write_study
from .test_supervision_parent import LONG, STARTED, STOPPED, no_leftovers, start_run, training, workers_of  # noqa: F401

QUIET = Console(quiet=True)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def claimed(engine: Engine, **attrs):
    """A WAITING cell claimed as a worker with ``attrs`` would, with a fresh heartbeat."""
    trial = engine.final.ask()
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    engine.storage.record_heartbeat(trial._trial_id)
    return trial


def state(engine: Engine, trial) -> TrialState:
    return engine.final.get_trials(deepcopy=False)[trial.number].state


def test_another_namespace_on_this_host_is_judged_by_its_heartbeat_not_its_pid(tmp_path):
    path = write_study(tmp_path / "ns", name="ns")
    engine = Engine(load_study(path), tmp_path / "ns", console=QUIET)
    prepare(engine, QUIET)
    mine = identity()
    assert mine["ns"] == namespace() and mine["ns"] and len(mine["token"]) == 32 and liveness(mine) is True
    gone = dead_pid()  # no such process here; in the other container it may well be its live worker
    container = claimed(engine, **{**mine, "pid": gone, "ns": "other-boot/pid:[4026532999]", "worker": "h:7"})
    old = claimed(engine, host=mine["host"], pid=gone, worker="h:8")  # from before namespaces were recorded
    here = claimed(engine, **{**mine, "pid": gone, "worker": "h:9"})
    reused = claimed(engine, **{**mine, "pid_start": "1", "worker": "h:10"})  # our pid, but another process's
    assert (liveness(container.user_attrs), liveness(old.user_attrs)) == (None, None)
    assert engine.reap() == 2  # this namespace's dead pid and reused pid, at once
    states = [state(engine, t) for t in (container, old, here, reused)]
    assert states == [TrialState.RUNNING] * 2 + [TrialState.FAIL] * 2
    assert "dead worker:" in running_line({**mine, "pid": gone}) and "running:" in running_line(container.user_attrs)
    engine.storage.grace_period = 1  # the heartbeat's verdict, sooner: no beat for 1 s
    time.sleep(2.5)
    engine.reap()
    assert [state(engine, t) for t in (container, old)] == [TrialState.FAIL] * 2
    waiting = engine.final.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert {t.user_attrs.get("retry_of") for t in waiting} >= {container.number, old.number, here.number}


@pytest.mark.slow  # a real `study run` or worker that trains (see test_supervision_parent.py)
def test_a_worker_in_its_own_pid_namespace_is_not_reaped_by_a_neighbour(tmp_path):
    """A real second PID namespace (``unshare``): its worker's pid means nothing here."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                                                         capture_output=True).returncode != 0:
        pytest.skip("no permission to make a PID namespace here")
    folder = tmp_path / "box"
    path = write_study(folder, name="box", fractions=[1.0], **LONG)
    engine = Engine(load_study(path), folder, console=QUIET)
    prepare(engine, QUIET)
    worker = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "medpeft.cli",
                               "study", "worker", path, "--threads", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (running := [t for t in engine.final.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                                if "ns" in t.user_attrs]):  # claimed, and its worker's identity written
            assert worker.poll() is None and time.monotonic() < deadline, "the boxed worker never claimed its cell"
            time.sleep(0.2)
        attrs = running[0].user_attrs
        assert attrs["ns"] != namespace() and attrs["host"] == identity()["host"]
        assert engine.reap() == 0  # its pid (small, inside the box) is not judged from here
        assert engine.final.get_trials(deepcopy=False)[running[0].number].state == TrialState.RUNNING
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


@pytest.mark.slow  # a real `study run` or worker that trains (see test_supervision_parent.py)
def test_the_storage_url_is_on_no_command_line_and_64_workers_are_capped(tmp_path, monkeypatch):
    folder = tmp_path / "secret"
    path = write_study(folder, name=f"secret{uuid.uuid4().hex[:8]}", fractions=[0.5, 1.0], **LONG)
    server = os.environ.get("MEDPEFT_TEST_POSTGRES")  # a real password when the test server runs
    url = server or f"sqlite:///{tmp_path}/pw-s3cr3t-{uuid.uuid4().hex[:6]}.db"
    secret = url.split("://", 1)[1].split("@", 1)[0] if server else url  # user:password, or the whole URL
    parent = start_run(path, "--workers", "64", "--storage", url)  # typed by a user: our own command line
    training(path, parent, workers=min(2, plan_workers(64)[0]))
    for pid in workers_of(path):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert secret not in cmdline and "--storage" not in cmdline, cmdline
        assert f"{STORAGE_ENV}={url}".encode() in Path(f"/proc/{pid}/environ").read_bytes()  # owner-only
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait(timeout=STOPPED + 30) == 130
    flat = " ".join((folder / "parent.out").read_text().split())
    allowed, why = plan_workers(64)
    assert allowed < 64 and why.startswith(f"--workers 64 capped to {allowed}: ") and why in flat, flat
    assert f"stopped {min(2, allowed)} worker(s)" in flat  # as many as the 2 cells need, at most
    # a user who keeps the password off the command line: $MEDPEFT_STORAGE stands for --storage
    monkeypatch.setenv(STORAGE_ENV, url)
    assert main(["study", "status", path]) == 0
    assert not (folder / "study.db").exists()  # the URL's storage was read, not a new SQLite file


def test_plan_workers_caps_to_cores_and_memory_with_the_reason():
    assert plan_workers(1) == (1, "")
    cores = len(os.sched_getaffinity(0))
    allowed, why = plan_workers(cores + 1)
    assert allowed == cores and "core(s) for this process" in why
    allowed, why = plan_workers(2, per_worker=2**50)  # a worker bigger than any machine's memory
    assert allowed == 1 and why.startswith("--workers 2 capped to 1: ") and "GiB of memory available" in why
    assert plan_workers(1, per_worker=2**50) == (1, "")  # one worker always runs


def test_the_watcher_paces_its_storage_reads_to_a_share_of_a_core():
    from medpeft.studies.supervise import WATCH_SHARE, poll_interval
    assert poll_interval(0.001, 2.0) == 2.0  # a cheap look: the shortest interval
    slow = poll_interval(0.19, 2.0)  # the ~9.5% of a core measured at a 2-s poll (issue 25)
    assert slow == pytest.approx(0.19 / WATCH_SHARE) and 0.19 / slow <= WATCH_SHARE + 1e-12
    assert poll_interval(10.0, 2.0) == 30.0  # never blind for more than 30 s


def test_a_stop_signal_inside_a_storage_call_is_raised_when_the_call_returns():
    """A SIGINT or SIGTERM that lands while a worker writes to the storage must not cut the write
    (issue 28: one in 13 left a SQLite database locked): it is raised once the call is over."""
    from medpeft.studies.supervise import storage_call, supervised
    done = []
    with pytest.raises(KeyboardInterrupt):
        with supervised():
            with storage_call():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # the handler has run by now: nothing was raised inside the call
                done.append("write finished")
    assert done == ["write finished"]
    with pytest.raises(KeyboardInterrupt):  # outside a storage call it is raised at once
        with supervised():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
            done.append("not reached")
    assert done == ["write finished"]
