"""The named cache's skeleton (runtime/named_cache.py): made once, reused, never replaced by another
config, a model from before a new option reused, a stale scratch run remade, publishing atomic."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medpeft.models.cache import CheckpointConflict, publish_files
from medpeft.runtime import RunDir
from medpeft.runtime.named_cache import CachedModel

DEFAULTS = {"width": 4, "seed": 0}  # "seed" stands for an option added in a later release


class Toy(CachedModel):
    scratch, marker = "toy-runs", "config.yaml"

    def read(self, values: dict) -> dict:
        if "broken" in values:
            raise ValueError("no longer reads")
        return {**DEFAULTS, **values}

    def files(self, run: Path) -> dict[str, Path]:
        return {"config.yaml": run / "config.yaml", "weights.bin": run / "weights.bin"}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def trainer(cached: Toy, calls: list):
    """Train into the scratch run (a file saying which config made it) and publish it."""
    def train(work: Path) -> None:
        calls.append(work)
        run = RunDir(work)
        with run.lock():
            run.start(cached.wanted, resume=True)
            (work / "weights.bin").write_text(repr(sorted(cached.wanted.items())))
            run.save_metrics({})
        cached.publish(work)
    return train


def refuse(work: Path) -> None:
    raise AssertionError("should have reused the cached model")


def test_made_once_then_reused(cache):
    calls = []
    cached = Toy("toy", dict(DEFAULTS))
    folder = cached.ensure(trainer(cached, calls))
    assert folder == cache / "checkpoints" / "toy" and calls == [cache / "toy-runs" / "toy"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "weights.bin"]
    assert Toy("toy", dict(DEFAULTS)).ensure(refuse) == folder


def test_a_model_cached_before_a_new_option_is_reused(cache):
    cached = Toy("toy", dict(DEFAULTS))
    folder = cached.ensure(trainer(cached, []))
    (folder / "config.yaml").write_text(yaml.safe_dump({"width": 4}))  # written before "seed" existed
    weights = (folder / "weights.bin").stat().st_mtime_ns
    assert Toy("toy", dict(DEFAULTS)).ensure(refuse) == folder
    assert (folder / "weights.bin").stat().st_mtime_ns == weights


def test_another_config_is_refused_until_the_folder_is_deleted(cache):
    first = Toy("toy", dict(DEFAULTS))
    folder = first.ensure(trainer(first, []))
    before = (folder / "weights.bin").read_text()
    other = Toy("toy", {**DEFAULTS, "width": 8})
    with pytest.raises(CheckpointConflict, match=r"'toy'.*width: 4 there, 8 here"):
        other.ensure(refuse)
    with pytest.raises(CheckpointConflict):
        other.check_publishable()
    first.check_publishable()  # the same config may publish again
    assert (folder / "weights.bin").read_text() == before
    (folder / "config.yaml").write_text(yaml.safe_dump({"broken": True}))
    with pytest.raises(CheckpointConflict, match="cannot read"):
        first.ensure(refuse)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    calls = []
    assert other.ensure(trainer(other, calls)) == folder and len(calls) == 1
    assert "8" in (folder / "weights.bin").read_text()


def scratch_run(cache: Path, name: str, saved: dict) -> Path:
    """An interrupted scratch run started with ``saved``, holding a file of its own."""
    work = cache / "toy-runs" / name
    work.mkdir(parents=True)
    RunDir(work).save_config(saved)
    (work / "partial").write_text("")
    return work


def test_a_scratch_run_of_another_config_is_removed_one_of_this_config_resumed(cache):
    other = scratch_run(cache, "toy", {"width": 8})
    older_spelling = scratch_run(cache, "toy2", {"width": 4})  # this config, written before "seed"
    for name in ("toy", "toy2"):
        cached = Toy(name, dict(DEFAULTS))
        cached.ensure(trainer(cached, []))
    assert not (other / "partial").exists() and (older_spelling / "partial").exists()


def test_a_finished_scratch_run_is_published_without_training(cache):
    cached = Toy("toy", dict(DEFAULTS))
    work = cache / "toy-runs" / "toy"
    trainer(cached, [])(work)
    for path in cached.folder.iterdir():
        path.unlink()
    cached.folder.rmdir()
    assert cached.ensure(refuse) == cached.folder and (cached.folder / "weights.bin").is_file()


def test_publishing_replaces_the_folder_whole(tmp_path, cache):
    (tmp_path / "a").write_text("new a")
    (tmp_path / "b").write_text("b")
    folder = publish_files("x", {"a.txt": tmp_path / "a", "old.txt": tmp_path / "b"})
    assert publish_files("x", {"a.txt": tmp_path / "a"}) == folder
    assert [p.name for p in folder.parent.iterdir()] == ["x"]  # no temporary folder left
    assert [p.name for p in folder.iterdir()] == ["a.txt"] and (folder / "a.txt").read_text() == "new a"


def test_a_bad_name_fails_before_anything_runs():
    with pytest.raises(ValueError, match="may hold letters"):
        Toy("../escape", dict(DEFAULTS))
