"""A study's SQLite storage as a user may leave it: never created (``status`` before ``run``),
created but not prepared, empty (0 bytes), not a database, or missing the run folders of finished
cells. Each is named, with what ``run`` does about it, and none delays or breaks ``run``."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from medpeft.cli import main
from medpeft.studies.engine import Engine
from medpeft.studies.runner import PREPARED, prepare, study_status
from medpeft.studies.spec import load_study

from .conftest import write_study

QUIET = Console(quiet=True)


def printed(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def run_here(path, console=QUIET) -> Engine:
    """The study's cells run in this process (prepare, then one worker)."""
    engine = Engine(load_study(path), Path(path).parent, console=console)
    prepare(engine, console)
    engine.work()
    return engine


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-cell study, copied by each test that damages it."""
    folder = tmp_path_factory.mktemp("finished")
    path = write_study(folder / "study")
    assert len(run_here(path).records()) == 4
    return Path(path).parent


def copy_of(finished, tmp_path) -> str:
    shutil.copytree(finished, tmp_path / "study")
    return str(tmp_path / "study" / "study.yaml")


def starts(run_dir: Path) -> int:
    return (run_dir / "log.txt").read_text().count("start:")


def test_status_and_report_before_the_first_run_create_nothing_and_run_does_not_wait(tmp_path, capsys):
    path = write_study(tmp_path / "new")
    assert main(["study", "status", path]) == 0
    assert "study tiny: not started" in printed(capsys)
    assert main(["study", "report", path]) == 2
    assert "nothing to report: study tiny: not started" in printed(capsys)
    assert not (tmp_path / "new" / "study.db").exists()  # read-only: no study, no file
    started = time.monotonic()
    engine = Engine(load_study(path), tmp_path / "new", console=QUIET)
    prepare(engine, QUIET)
    assert time.monotonic() - started < 60  # it used to wait 120 s for a preparer that never came
    assert len(engine.final.get_trials(deepcopy=False)) == 4


def test_a_study_created_but_never_prepared_is_prepared_by_the_next_starter(tmp_path):
    """What `status` of older versions left behind: the study, no cells, no `prepared` mark."""
    path = write_study(tmp_path / "half")
    engine = Engine(load_study(path), tmp_path / "half", console=QUIET)
    optuna.create_study(study_name="tiny", storage=engine.storage, direction="maximize")
    started = time.monotonic()
    prepare(engine, QUIET)
    assert time.monotonic() - started < 30
    assert engine.final.user_attrs.get(PREPARED) is True
    assert len(engine.final.get_trials(deepcopy=False)) == 4


def test_an_empty_study_db_is_named_and_run_takes_the_finished_folders(finished, tmp_path, capsys):
    path = copy_of(finished, tmp_path)
    db = tmp_path / "study" / "study.db"
    db.write_bytes(b"")
    os.utime(db, (time.time() - 60, time.time() - 60))
    status = study_status(path)
    out = printed(capsys)
    assert "study.db is empty (0 bytes)" in out and "takes the 4 finished run folder(s)" in out
    assert status.total == 4 and status.done == 0
    assert db.stat().st_size == 0  # status did not touch it
    assert main(["study", "report", path]) == 2 and "is empty (0 bytes)" in printed(capsys)
    engine = run_here(path, Console(width=400))
    said = " ".join(printed(capsys).split())  # warnings go to stderr
    assert "was empty (0 bytes): the study starts afresh; its 4 finished run folder(s)" in said
    assert len(engine.records()) == 4
    assert all(starts(Path(r["run_dir"])) == 1 for r in engine.records())  # read, not trained again


@pytest.mark.parametrize("damage", [os.urandom(4096), b"SQLite format 3\x00" + os.urandom(8192)],
                         ids=["random-bytes", "garbage-after-header"])
def test_a_study_db_that_is_no_database_is_named_with_what_to_do(finished, tmp_path, capsys, damage):
    path = copy_of(finished, tmp_path)
    (tmp_path / "study" / "study.db").write_bytes(damage)
    for command in ("status", "report", "run", "worker"):
        assert main(["study", command, path]) == 2, command
        out = " ".join(printed(capsys).split())
        assert "study.db is not a SQLite database" in out, (command, out)
        assert "move it away or delete it to start over" in out and "Traceback" not in out
    assert (tmp_path / "study" / "study.db").read_bytes() == damage  # left as it was


def test_finished_cells_without_run_folders_are_counted_and_what_run_does_said(finished, tmp_path, capsys):
    path = copy_of(finished, tmp_path)
    runs = sorted((tmp_path / "study" / "runs").iterdir())
    for gone in runs[:3]:
        shutil.rmtree(gone)
    assert main(["study", "status", path]) == 0
    out = " ".join(printed(capsys).split())
    assert "study tiny: 4/4 done" in out
    assert "3 finished cell(s) have no run folder" in out and "does not run them again" in out
    assert main(["study", "report", path, "--out", str(tmp_path / "report")]) == 0
    assert "3 finished cell(s) have no run folder" in " ".join(printed(capsys).split())
    engine = run_here(path, Console(width=400))
    assert "3 finished cell(s) have no run folder" in " ".join(printed(capsys).split())
    assert len(engine.final.get_trials(deepcopy=False)) == 4  # as said: nothing ran again
    assert sorted((tmp_path / "study" / "runs").iterdir()) == runs[3:]
