"""The run directory's safety rules: one process at a time, no silent restart of an unfinished
run, a checkpoint resumes only under its own config, unreadable checkpoints are clear errors."""
from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

from medpeft.runtime import RunDir, RunInUse, run_slug
from medpeft.runtime.rundir import config_digest

from ..payloads import Exploit

CONFIG = {"data": {"spec": "synthetic-cxr"}, "train": {"epochs": 2, "seed": 0}}


def started(path, config=CONFIG, resume=False):
    run = RunDir(path)
    with run.lock():
        return run.start(config, resume=resume)


def checkpointed(path, config=CONFIG):
    run = RunDir(path)
    with run.lock():
        run.start(config, resume=False)
        run.save_checkpoint({"epoch": 0, "model": {"w": torch.ones(2)}, "optimizer": {}}, config)
    return run


def test_a_second_holder_of_the_lock_is_refused_at_once(tmp_path):
    first, second = RunDir(tmp_path / "run"), RunDir(tmp_path / "run")
    with first.lock():
        with pytest.raises(RunInUse, match="in use by another medpeft process"):
            with second.lock():
                pass
    with second.lock():  # released when the first holder is done
        pass


def test_the_lock_holds_against_another_process(tmp_path):
    run = RunDir(tmp_path / "run")
    code = ("import sys; from medpeft.runtime import RunDir\n"
            "try:\n    RunDir(sys.argv[1]).lock().__enter__()\nexcept ValueError as e:\n    print(e); sys.exit(3)\n")
    with run.lock():
        other = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True)
    assert other.returncode == 3 and "in use" in other.stdout
    again = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr


def test_start_needs_the_lock(tmp_path):
    with pytest.raises(AssertionError, match="needs the directory lock"):
        RunDir(tmp_path / "run").start(CONFIG, resume=False)


def test_an_unfinished_run_is_not_restarted_without_resume(tmp_path):
    checkpointed(tmp_path / "run")
    with pytest.raises(ValueError, match="holds an unfinished run .*pass --resume"):
        started(tmp_path / "run")
    state = started(tmp_path / "run", resume=True)
    assert state["epoch"] == 0 and torch.equal(state["model"]["w"], torch.ones(2))


def test_resume_refuses_another_config_and_a_foreign_checkpoint(tmp_path):
    run = checkpointed(tmp_path / "run")
    other = {**CONFIG, "train": {"epochs": 2, "seed": 1}}
    with pytest.raises(ValueError, match=r"different config \(train differ\)"):
        started(tmp_path / "run", other, resume=True)
    more_epochs = {**CONFIG, "train": {"epochs": 5, "seed": 0}}
    assert started(tmp_path / "run", more_epochs, resume=True)["epoch"] == 0  # epochs may change
    # a checkpoint written under another config (e.g. a killed restart) is not resumed
    run.save_checkpoint({"epoch": 1, "model": {}, "optimizer": {}}, other)
    with pytest.raises(ValueError, match="does not belong to"):
        started(tmp_path / "run", more_epochs, resume=True)


def test_a_finished_run_is_never_overwritten(tmp_path):
    started(tmp_path / "run")
    RunDir(tmp_path / "run").save_metrics({"test": {}})
    for resume in (False, True):
        with pytest.raises(ValueError, match="already holds a finished run"):
            started(tmp_path / "run", resume=resume)


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    run = checkpointed(tmp_path / "run")
    data = run.checkpoint_path.read_bytes()
    run.checkpoint_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot be read .*truncated or corrupt; delete it"):
        started(tmp_path / "run", resume=True)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_exploit_is_refused_not_run(tmp_path, writer):
    """In a checkpoint as torch writes it, and as a bare pickle: refused, and its payload never runs."""
    run = checkpointed(tmp_path / "run")
    marker = tmp_path / "payload-ran"
    state = {"epoch": 0, "model": Exploit(marker), "optimizer": {}}
    if writer == "torch.save":
        torch.save(state, run.checkpoint_path)
    else:
        with open(run.checkpoint_path, "wb") as handle:
            pickle.dump(state, handle, protocol=2)  # torch's own protocol: no warning from its loader
    with pytest.raises(ValueError, match="not a weights-only checkpoint"):
        started(tmp_path / "run", resume=True)
    assert not marker.exists()
    # positive control: the payload is live, plain unpickling runs it
    with open(run.checkpoint_path, "rb") as handle:
        if writer == "pickle.dump":
            pickle.load(handle)
        else:
            torch.load(handle, weights_only=False)
    assert marker.read_text() == "ran"


def test_digest_ignores_only_the_fields_that_may_change():
    base = config_digest(CONFIG, ("epochs",))
    assert base == config_digest({**CONFIG, "train": {"epochs": 9, "seed": 0}}, ("epochs",))
    assert base != config_digest({**CONFIG, "train": {"epochs": 2, "seed": 1}}, ("epochs",))


def test_run_slug_is_the_one_naming_rule():
    assert run_slug("medmnist:pneumoniamnist?x=1", "vit_tiny", "lora", "f0.1", "s0") == \
        "medmnist-pneumoniamnist-vit_tiny-lora-f0.1-s0"
    assert run_slug("../../escape") == "escape" and run_slug("") == "run"


def test_a_config_in_an_older_spelling_resumes_and_the_checkpoint_is_restamped(tmp_path):
    """``read`` maps a saved config to today's form; the checkpoint is re-stamped for today's
    config, so a second resume (even one killed before the next checkpoint) still matches."""
    old = {"data": {"spec": "synthetic-cxr"}, "train": {"epochs": 2, "seed": 0}}
    today = {"data": {"spec": "synthetic-cxr", "fraction": 1.0}, "train": {"epochs": 2, "seed": 0}}
    read = lambda saved: {**saved, "data": {"fraction": 1.0, **saved["data"]}}
    checkpointed(tmp_path / "run", old)
    run = RunDir(tmp_path / "run")
    with run.lock():
        with pytest.raises(ValueError, match=r"different config \(data differ\)"):
            run.start(today, resume=True)  # without ``read`` the spelling counts
        state = run.start(today, resume=True, read=read)
    assert torch.equal(state["model"]["w"], torch.ones(2))
    assert run.load_checkpoint()["config_digest"] == config_digest(today, ("epochs",)) == state["config_digest"]
    assert run.load_config() == today
    with run.lock():  # killed before the next checkpoint: resumes again, with or without ``read``
        assert torch.equal(run.start(today, resume=True)["model"]["w"], torch.ones(2))
    with run.lock():  # a real difference is still refused after the mapping
        with pytest.raises(ValueError, match=r"different config \(train differ\)"):
            run.start({**today, "train": {"epochs": 2, "seed": 1}}, resume=True, read=read)
