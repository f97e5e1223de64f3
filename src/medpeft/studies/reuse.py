"""Finished runs of other studies reused as cells (``reuse:`` in a study file).

A cell whose run config, as today's code resolves it, equals that of a finished run of a
``reuse`` study (data, subset, backbone and checkpoint name, method and options, every training
setting, seed) is that run: its folder is copied, hard-linked where the file system allows,
instead of training again (:func:`find_donor`, :func:`copy_run`). Search trials of those
studies are not reused.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

from ..runtime import RunConfig, RunDir
from .spec import StudyConfig


def find_donor(config: RunConfig, finished: Callable[[], dict[str, list[Path]]]) -> Path | None:
    """The finished run that is ``config``, whatever its labels, or None. ``finished`` gives the
    index of :func:`finished_runs` (made on first need). A cached checkpoint name stands for one
    pretraining recipe (``CheckpointConflict``), so the same name means the same foundation
    model."""
    from ..runtime.build import resolve_run_config

    try:
        wanted = resolve_run_config(config)[0].to_dict()
    except (ValueError, FileNotFoundError):  # e.g. its checkpoint is not made yet: it trains
        return None
    for candidate in finished().get(_canonical(wanted), []):
        try:  # the index compared configs as saved; confirm as today's code resolves them
            saved = resolve_run_config(RunConfig.from_dict(RunDir(candidate).load_config()))[0].to_dict()
        except (ValueError, TypeError, FileNotFoundError):
            continue
        if saved == wanted:
            return candidate
    return None


def finished_runs(study: StudyConfig, console: Console) -> dict[str, list[Path]]:
    """Finished runs of the ``reuse`` studies (not their search trials), by saved config."""
    index: dict[str, list[Path]] = {}
    for folder in study.reuse:
        root = Path(study.folder) / folder
        if not root.is_dir():  # a misspelt folder is named; one not run yet (no runs/) is skipped below
            console.print(f"[yellow]reuse: {folder} is not a folder (from {study.folder}); "
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
    return index


def copy_run(donor: Path, path: Path, study: str) -> dict:
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


def _canonical(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)
