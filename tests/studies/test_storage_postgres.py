"""A study's PostgreSQL storage through outages and races, against the real server
($MEDPEFT_TEST_POSTGRES): a TCP proxy this test controls stands between medpeft and the server
(the shared server itself is never stopped), so an outage is the proxy refusing connections and
cutting the open ones. Fresh databases are created (CREATEDB) and dropped by the tests."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from medpeft.studies.storage import StorageUnavailable, open_storage, storage_url

from .conftest import postgres_server, write_study


class Proxy:
    """A threaded TCP forwarder to the server that can be switched off (connections refused, open
    ones cut) and on again, on the same port."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self.listener = self.listener, None
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self.conns.clear()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def new_database():
    """A new, empty database on the test server (dropped afterwards): its SQLAlchemy URL."""
    base = postgres_server()
    name = f"medpeft_storage_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(storage_url(Path("."), base)).set(database=name)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database():
    with new_database() as url:
        yield url


@pytest.fixture
def proxied(fresh_database):
    """(a URL through a proxy to a fresh database, the proxy, the direct URL)."""
    proxy = Proxy(fresh_database.host or "localhost", fresh_database.port or 5432)
    through = fresh_database.set(host="127.0.0.1", port=proxy.port)
    yield through.render_as_string(hide_password=False), proxy, fresh_database.render_as_string(hide_password=False)
    with contextlib.suppress(Exception):
        proxy.down()


def test_an_outage_is_waited_out_and_a_longer_one_names_its_cause(proxied, monkeypatch, capsys):
    url, proxy, _ = proxied
    storage = open_storage(url)
    optuna.create_study(study_name="s", storage=storage)
    monkeypatch.setenv("MEDPEFT_STORAGE_WAIT", "60")
    proxy.down()
    threading.Timer(4.0, proxy.up).start()
    started = time.monotonic()
    assert [s.study_name for s in storage.get_all_studies()] == ["s"]  # waited, then carried on
    assert time.monotonic() - started >= 3.5
    err = capsys.readouterr().err
    assert "unreachable (connection refused to 127.0.0.1" in err and "retrying in 1 s" in err
    assert "reachable again after" in err and "medpeft:***@" in err and ":medpeft@" not in err

    monkeypatch.setenv("MEDPEFT_STORAGE_WAIT", "3")
    proxy.down()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        storage.get_all_studies()
    assert 2.5 <= time.monotonic() - started < 15
    message = str(raised.value)
    assert f"connection refused to 127.0.0.1:{proxy.port}" in message and "unreachable for 3 s" in message
    assert "max length" not in message
    with pytest.raises(Exception):  # a heartbeat is one try: it never blocks its thread
        started = time.monotonic()
        storage.record_heartbeat(1)
    assert time.monotonic() - started < 5
    assert storage._get_stale_trial_ids(1) == []  # nobody's heartbeat is judged right after an outage


def counts(url: str, name: str) -> dict[str, int]:
    study = optuna.load_study(study_name=name, storage=url)
    out = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        out[t.user_attrs["cell"]] = out.get(t.user_attrs["cell"], 0) + 1
    return out


def closed_search_trials(url: str, name: str) -> int:
    return sum(1 for summary in optuna.get_all_study_summaries(url) if summary.study_name.startswith(f"{name}:search:")
               for t in optuna.load_study(study_name=summary.study_name, storage=url).get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED))


def sweep_through_outage(tmp_path, proxied, outage: float, **study) -> None:
    """`study run --workers 2` through the proxy; the proxy goes down for ``outage`` s once a cell
    has finished; every cell must finish once, no trial fail, both workers live to the end."""
    url, proxy, direct = proxied
    name = f"o{uuid.uuid4().hex[:8]}"
    path = write_study(tmp_path / "sweep", name=name, **study)
    env = {**os.environ, "MEDPEFT_STORAGE_WAIT": "300"}
    parent = subprocess.Popen([sys.executable, "-m", "medpeft.cli", "study", "run", path, "--workers", "2",
                               "--storage", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and parent.poll() is None:
        with contextlib.suppress(KeyError, Exception):
            if sum(counts(direct, name).values()) >= 1 or closed_search_trials(direct, name) >= 1:
                break  # mid-sweep: a cell, or with a search a first search trial, has finished
        time.sleep(0.5)
    assert parent.poll() is None, "the sweep ended before the outage"
    proxy.down()
    time.sleep(outage)
    proxy.up()
    out = parent.communicate(timeout=900)[0]
    assert parent.returncode == 0, out
    # (a claim that found the queue emptied by the other worker is closed as "claimed nothing")
    cells = {t.user_attrs["cell"] for t in optuna.load_study(study_name=name, storage=direct).get_trials()
             if "cell" in t.user_attrs}
    assert counts(direct, name) == {cell: 1 for cell in cells} and len(cells) == 4  # every cell once
    trials = optuna.load_study(study_name=name, storage=direct).get_trials(deepcopy=False)
    assert not [t.user_attrs.get("error") for t in trials if t.user_attrs.get("error")]
    logs = [p.read_text() for p in sorted((tmp_path / "sweep" / "logs").glob("worker-*.log"))]
    assert len(logs) == 2 and all("ran " in log for log in logs), logs  # no worker lost
    everything = out + "".join(logs)
    assert "unreachable" in everything and "reachable again" in everything
    assert "Traceback" not in everything
    searches = [s.study_name for s in optuna.get_all_study_summaries(direct) if s.study_name.startswith(f"{name}:search:")]
    for search in searches:  # no search state lost: every trial asked for ran once and closed
        every = optuna.load_study(study_name=search, storage=direct).get_trials(deepcopy=False)
        # workers that resume together may each ask for the last trial: the later ones are closed unrun
        trials = [t for t in every if not t.user_attrs.get("surplus")]
        assert all(t.state == TrialState.FAIL and not t.params for t in every if t not in trials)
        assert [t.number for t in trials] == list(range(study["search"]["trials"])), [(t.number, t.state) for t in every]
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    assert len(searches) == (len(study["fractions"]) if "search" in study else 0)  # one search per group


TINY_SWEEP = dict(fractions=[0.5, 1.0], seeds=[0, 1], methods=[{"name": "fft", "label": "FFT"}],
                  train={"epochs": 3, "batch_size": 16, "n_bootstrap": 0})


def test_a_two_worker_sweep_survives_a_short_outage(tmp_path, proxied):
    sweep_through_outage(tmp_path, proxied, 8.0, **TINY_SWEEP)


@pytest.mark.slow
def test_a_two_worker_sweep_survives_a_minute_long_outage(tmp_path, proxied):
    sweep_through_outage(tmp_path, proxied, 60.0, **TINY_SWEEP)


@pytest.mark.slow
def test_a_searched_sweep_survives_a_minute_long_outage_with_its_search_whole(tmp_path, proxied):
    sweep_through_outage(tmp_path, proxied, 60.0, **TINY_SWEEP, search={
        "trials": 4, "pruner": "asha", "space": {"FFT": {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}}})


def test_starters_racing_on_an_empty_database_all_open_it():
    """Optuna's table creation races (UniqueViolation on pg_type_typname_nsp_index: every one of
    3 rounds of 4 threads tried hit it); the control round, Optuna's own storage on another empty
    database, shows that the race happens here."""
    def race(opener) -> list[str]:
        errors, barrier = [], threading.Barrier(4)
        with new_database() as url:
            def start():
                barrier.wait()
                try:
                    opener(url.render_as_string(hide_password=False)).engine.dispose()
                except Exception as err:  # noqa: BLE001 - counted
                    errors.append(str(err))
            threads = [threading.Thread(target=start) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return errors

    assert race(open_storage) == []
    control = race(RDBStorage)
    assert any("pg_type_typname_nsp_index" in e or "already exists" in e for e in control), control


def test_two_workers_starting_together_on_an_empty_database_both_join(tmp_path, fresh_database):
    url = fresh_database.render_as_string(hide_password=False)
    path = write_study(tmp_path / "fresh", name="fresh", fractions=[0.5, 1.0], methods=[{"name": "fft"}])
    command = [sys.executable, "-m", "medpeft.cli", "study", "worker", path, "--threads", "1", "--storage", url]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert counts(url, "fresh") == {c: 1 for c in counts(url, "fresh")} and len(counts(url, "fresh")) == 2


def test_status_of_a_study_not_in_the_database_does_not_create_it(tmp_path, fresh_database, capsys):
    from medpeft.cli import main

    url = fresh_database.render_as_string(hide_password=False)
    path = write_study(tmp_path / "s", name="notyet")
    assert main(["study", "status", path, "--storage", url]) == 0
    assert "not started (no study of that name in postgresql+psycopg://medpeft:***@" in capsys.readouterr().out
    assert main(["study", "report", path, "--storage", url]) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == []
