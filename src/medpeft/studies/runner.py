"""``medpeft study run``: prepare a study, start N local worker processes, show one live line
per worker, and say at the end what finished and what failed.

One runner for every kind of study: the study file says which (:func:`kind_of`,
``studies/kinds.py``), and ``run_study``, ``run_worker``, ``study_status`` and ``report_study``
pick the kind themselves when not given one; a diffusion study's report is
``studies/generative_report.py``.

The same command on another machine, with the same ``--storage postgresql://...``, joins the
study: whichever starter creates the study in the storage enqueues its cells; the others wait
until it has, then their workers claim cells from the same queue.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import optuna
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from ..console import make_console, print_error, print_warning
from .engine import POLL, Engine, Progress
from .grid import UnreadablePredictions
from .kinds import StudyKind, study_kind, work_dir_of
from .spec import load_study, read_study_file
from .storage import finished_run_folders, missing_runs, missing_runs_message, shown_url, sqlite_file, started_engine
from .supervise import RunLock, Workers, cores, interrupts, plan_workers, poll_interval, running_line, supervised

PREPARED = "prepared"  # study user attr set once its cells are enqueued
PREPARING = "preparing"  # study user attr {"by": worker, "at": time} set by the starter that created it
WORKER_COMMAND = ("study", "worker")  # what `study run` starts N of, for every kind

CLASSIFIER = StudyKind(name="classifier", load=load_study, engine=Engine)

__all__ = ["CLASSIFIER", "StudyKind", "kind_of", "report_study", "run_study", "run_worker", "study_status",
           "work_dir_of"]


def kind_of(path: str | Path) -> StudyKind:
    """The kind of study a file holds: its ``kind:``, else diffusion when it has ``base`` and
    ``judge``, else classifier (``studies/kinds.py``); an unknown ``kind`` is a ValueError."""
    from .generative import DIFFUSION

    where, values = read_study_file(path)
    return DIFFUSION if study_kind(values, where) == DIFFUSION.name else CLASSIFIER


def prepare(engine: Engine, console: Console, wait: float = 120.0) -> None:
    """Enqueue the study's cells once, however many starters race to do it: the one that creates
    the study marks it as being prepared (:data:`PREPARING`) and the others wait for it (up to
    ``wait`` s); a study that exists unprepared with no one preparing it (created by an older
    ``status``, or its starter died) is prepared by this starter."""
    name, storage = engine.study.name, engine.storage
    if getattr(storage, "found_empty", False):
        runs = finished_run_folders(engine.work_dir)
        print_warning(console, f"{sqlite_file(engine.url)} was empty (0 bytes): the study starts afresh; its "
                      f"{runs} finished run folder(s) in {engine.work_dir / 'runs'} are taken as they are, "
                      f"without training them again")
    try:
        optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=False)
        engine.final.set_user_attr(PREPARING, {"by": engine.worker, "at": time.time()})
        creator = True
    except optuna.exceptions.DuplicatedStudyError:
        creator = False
    study = engine.final
    if not creator and not study.user_attrs.get(PREPARED):
        if not _being_prepared(study.user_attrs, wait):  # maybe its creator has not marked it yet
            time.sleep(POLL)
            study = optuna.load_study(study_name=name, storage=storage)
        deadline = time.monotonic() + wait
        while (not study.user_attrs.get(PREPARED) and _being_prepared(study.user_attrs, wait)
               and time.monotonic() < deadline):
            time.sleep(POLL)  # another starter is enqueueing the cells
            study = optuna.load_study(study_name=name, storage=storage)
    engine.reap()
    added = engine.enqueue_missing(retry_failed=True)
    if not study.user_attrs.get(PREPARED):
        engine.final.set_user_attr(PREPARED, True)
    if added:
        console.print(f"enqueued {added} cell(s)")
    missing = missing_runs(engine)
    if missing:
        print_warning(console, missing_runs_message(missing, engine.work_dir))


def _being_prepared(attrs: dict, wait: float) -> bool:
    """Whether a starter marked the study as being prepared less than ``wait`` s ago."""
    mark = attrs.get(PREPARING)
    return isinstance(mark, dict) and time.time() - float(mark.get("at", 0)) < wait


def run_study(path: str | Path, *, workers: int = 1, storage: str | None = None,
              work_dir: str | Path | None = None, threads: int | None = None,
              console: Console | None = None, kind: StudyKind | None = None) -> int:
    """Run every missing or failed cell with ``workers`` local processes; 0 when all are done.
    One run per study folder and machine (``supervise.RunLock``: a second is refused, naming the
    first); ``workers`` is capped to the cores and memory (``supervise.plan_workers``); the workers
    stop when this process dies or is interrupted (SIGINT, SIGTERM), and a failed one is named with
    its log (``studies/supervise.py``)."""
    console = console or make_console()
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    kind = kind or kind_of(path)
    study = kind.load(path)
    work = work_dir_of(path, work_dir)
    workers, why = plan_workers(workers)
    with RunLock(work, study.name, workers):
        engine = kind.engine(study, work, storage, console=console)
        started = time.time()
        console.print(f"study {study.name}: {len(engine.cells)} cells, storage {engine_url(engine)}, runs in {work}")
        if why:
            print_warning(console, why)
        engine.ensure_pretrained()
        prepare(engine, console)
        status = engine.progress()
        if status.done == status.total:
            return summary(engine, console, time.time() - started)
        threads = threads or max(1, cores() // workers)
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        procs = _spawn(path, work, storage, workers, threads, logs)
        try:
            with interrupts():
                _watch(engine, procs.procs, console, started)
        except KeyboardInterrupt:
            stopped = procs.stop()
            console.print(f"stopped {stopped} worker(s); their cells are queued again: run the same command to "
                          "resume (finished cells and epochs are kept)")
            raise
        finally:
            procs.close()
        return summary(engine, console, time.time() - started, procs.failures())


def engine_url(engine: Engine) -> str:
    return shown_url(engine.url)


def _spawn(path, work: Path, storage: str | None, count: int, threads: int, logs: Path) -> Workers:
    """``count`` processes of ``medpeft study worker`` (each reads the study's kind from the file
    itself; the storage URL goes through ``$MEDPEFT_STORAGE``, never the command line)."""
    procs = Workers()
    procs.start([sys.executable, "-m", "medpeft.cli", *WORKER_COMMAND, str(path), "--dir", str(work),
                 "--threads", str(threads)], logs, count, storage)
    return procs


def _watch(engine: Engine, procs: list[subprocess.Popen], console: Console, started: float) -> None:
    """One live line per local worker until they exit (a line per finished cell off a terminal).
    The storage is read at most every :func:`poll_interval` (a share of one core, however slow
    the storage), and a worker's exit is seen at once."""
    pids = {f"{socket.gethostname()}:{p.pid}": index + 1 for index, p in enumerate(procs)}

    def look() -> Progress:
        nonlocal interval
        cpu = time.process_time()
        status = engine.progress()
        interval = poll_interval(time.process_time() - cpu, POLL)
        return status

    def wait() -> None:  # until a worker exits, at most `interval` s
        live = [p for p in procs if p.poll() is None]
        if live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                live[0].wait(timeout=interval)

    interval = POLL
    if console.is_terminal:
        with Live(console=console, refresh_per_second=1, transient=False) as live:
            while any(p.poll() is None for p in procs):
                live.update(_lines(look(), pids, procs, started))
                wait()
            live.update(_lines(engine.progress(), pids, procs, started))
        return
    last = None
    while any(p.poll() is None for p in procs):
        status = look()
        if (status.done, status.failed) != last:
            last = (status.done, status.failed)
            console.print(_headline(status, len(procs), started))
        wait()


def _headline(status: Progress, workers: int, started: float) -> str:
    remaining = status.total - status.done - status.failed
    eta = ""
    if status.mean_seconds and remaining > 0:
        eta = f", about {remaining * status.mean_seconds / max(workers, 1) / 60:.1f} min left"
    return (f"{status.done}/{status.total} cells done, {status.failed} failed, {len(status.running)} running"
            f"{eta} ({time.time() - started:.0f} s)")


def _lines(status: Progress, pids: dict[str, int], procs, started: float) -> Group:
    lines = [Text(_headline(status, len(procs), started), style="bold")]
    by_worker = {attrs.get("worker"): attrs for attrs in status.running}
    for worker, index in sorted(pids.items(), key=lambda item: item[1]):
        attrs = by_worker.get(worker)
        if procs[index - 1].poll() is not None:
            code = procs[index - 1].returncode
            text = "finished" if code == 0 else f"failed (exit {code}; see logs/worker-{index}.log)"
        elif attrs is None:
            text = "waiting for work"
        else:
            seconds = time.time() - attrs.get("started", time.time())
            text = f"{attrs.get('label', attrs.get('cell'))} — {attrs.get('progress', 'starting')} ({seconds:.0f} s)"
        lines.append(Text(f"worker {index}: {text}"))
    others = [a for w, a in by_worker.items() if w not in pids]
    if others:
        lines.append(Text(f"{len(others)} cell(s) running on other workers"))
    return Group(*lines)


def summary(engine: Engine, console: Console, seconds: float, failed_workers: list[str] = ()) -> int:
    """What finished and what failed (cells, and workers that died: their error and log); 0 when
    every cell is done and no worker failed."""
    status = engine.progress()
    console.print(f"study {engine.study.name}: {status.done}/{status.total} cells done in {seconds:.0f} s")
    failures = engine.failures()
    for cell, error in failures:
        print_error(console, f"{cell}: {error}", "failed")
    for text in failed_workers:
        print_error(console, text, "worker failed")
    if failed_workers:
        print_error(console, f"{len(failed_workers)} worker(s) failed ({status.done}/{status.total} cells done); "
                             "fix the cause shown in their logs and run the same command again (finished cells "
                             "and epochs are kept)")
    elif failures:
        console.print("run the same command again to retry the failed cells (finished ones are kept)")
    return 0 if status.done == status.total and not failed_workers else 1


def run_worker(path: str | Path, *, storage: str | None = None, work_dir: str | Path | None = None,
               threads: int | None = None, worker_id: str = "", console: Console | None = None,
               kind: StudyKind | None = None) -> int:
    """One worker in this process: claims and runs cells until the study is done."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    console = console or make_console()
    with supervised():  # SIGINT/SIGTERM: the trial is queued again; the parent's death stops it
        kind = kind or kind_of(path)
        study = kind.load(path)
        engine = kind.engine(study, work_dir_of(path, work_dir), storage, console=console)
        ran = engine.work()
    console.print(f"worker {worker_id or engine.worker}: ran {ran} trial(s)")
    return 0


def study_status(path: str | Path, *, storage: str | None = None, work_dir: str | Path | None = None,
                 console: Console | None = None, kind: StudyKind | None = None) -> Progress:
    """Print (and return) what is done, running, waiting and failed. Read-only: a study that is not
    in its storage yet is said to be "not started" (it is not created), an empty or corrupt SQLite
    file is named, and finished cells whose run folder is gone are counted."""
    console = console or make_console()
    kind = kind or kind_of(path)
    study = kind.load(path)
    work = work_dir_of(path, work_dir)
    engine, why = started_engine(kind, study, work, storage, console)
    if engine is None:
        console.print(why)
        total = len(kind.engine.make_cells(types.SimpleNamespace(work_dir=work), study))  # uses only work_dir
        return Progress(total=total, done=0, failed=0, running=[], waiting=0, mean_seconds=None)
    status = engine.progress()
    console.print(f"study {study.name}: {status.done}/{status.total} done, {len(status.running)} running, "
                  f"{status.waiting} waiting, {status.failed} failed")
    missing = missing_runs(engine)
    if missing:
        print_warning(console, missing_runs_message(missing, work))
    for attrs in status.running:
        console.print(f"  {running_line(attrs)}")  # a dead worker's cell is marked as such
    for cell, error in engine.failures():
        print_error(console, f"{cell}: {error}", "failed")
    return status


def _joined_records(engines: list[Engine]) -> list[dict]:
    """The finished cells of several studies, refusing two results for one table cell."""
    records, seen = [], {}
    for engine in engines:
        for record in engine.records():
            where = (record["dataset"], record["fraction"], record["backbone"], record["label"], record["seed"],
                     record.get("subset"))
            if where in seen:
                raise ValueError(f"studies {seen[where]} and {engine.study.name} both have a result for "
                                 f"{where[0]} {where[1]:g} {where[2]} {where[3]} seed {where[4]}"
                                 + ("" if where[5] is None else f" subset {where[5]}") + "; report "
                                 "studies whose cells do not overlap (e.g. the slices of one study)")
            seen[where] = engine.study.name
            records.append(record)
    return records


def _cost(engines: list[Engine]) -> str:
    """What the results of one or more studies cost in CPU/GPU time, for the report's first line
    (a pretraining step that several of them share counts once)."""
    cost = {"cells": 0.0, "reused": 0, "search": 0.0, "search_trials": 0, "pretraining": {}}
    for engine in engines:
        spent = engine.compute_time()
        for key in ("cells", "reused", "search", "search_trials"):
            cost[key] += spent[key]
        cost["pretraining"].update(spent["pretraining"])
    parts = [f"cells {cost['cells'] / 60:.1f} min"]
    if cost["reused"]:
        parts[0] += f" (+ {cost['reused']} copied from identical runs of other studies)"
    if cost["search_trials"]:
        parts.append(f"search {cost['search'] / 60:.1f} min ({cost['search_trials']} trials)")
    parts += [f"pretraining {name} {seconds / 60:.1f} min" for name, seconds in cost["pretraining"].items()]
    return ", ".join(parts) + " (summed run times, not wall-clock)"


def report_study(path: str | Path, *, storage: str | None = None, work_dir: str | Path | None = None,
                 out: str | Path | None = None, console: Console | None = None, fmt: str = "table",
                 command: str | None = None, also: list[str | Path] = (), title: str | None = None,
                 kind: StudyKind | None = None) -> list[Path]:
    """Write the report of the study's finished cells into ``out`` (default ``<study>/report``)
    and print its tables in ``fmt``. ``also``: other studies (each with its storage in its own
    folder, e.g. the other slices of one big study) whose finished cells join the same tables;
    the title, row order, baseline and published figures start from the first study's.
    A diffusion study's report is the generative table (``studies/generative_report.py``)."""
    from .report import report_tables, write_report

    console = console or make_console()
    kind = kind or kind_of(path)
    engines = []  # the first study's, then those of `also` (classifier studies, each in its own folder;
    # a diffusion report refuses `also` itself)
    for index, where in enumerate([path, *also] if kind is CLASSIFIER else [path]):  # read-only: a study
        this = kind if index == 0 else CLASSIFIER  # not in its storage is not created by its report
        engine, why = started_engine(this, this.load(where), work_dir_of(where, work_dir if index == 0 else None),
                                     storage if index == 0 else None, console)
        if engine is None:
            raise ValueError(f"nothing to report: {why}")
        missing = missing_runs(engine)
        if missing:
            print_warning(console, missing_runs_message(missing, engine.work_dir))
        engines.append(engine)
    if kind is not CLASSIFIER:
        return _report_diffusion(path, storage=storage, work_dir=work_dir, out=out, console=console, fmt=fmt,
                                 command=command, also=also, title=title)
    study, work = engines[0].study, engines[0].work_dir
    records = _joined_records(engines)
    title = title or study.report.title or (f"{study.name}: {study.description}" if study.description else study.name)
    anchors = list({json.dumps(dataclasses.asdict(a), sort_keys=True): dataclasses.asdict(a)
                    for e in engines for a in e.study.report.anchors}.values())
    rows = list(dict.fromkeys(m.label or m.name for e in engines for m in e.study.methods))
    baseline = study.report.baseline or ""
    seeds = sorted({seed for e in engines for seed in e.study.seeds})
    statuses = [e.progress() for e in engines]
    done, total = sum(s.done for s in statuses), sum(s.total for s in statuses)
    note = (f"{done} of {total} cells finished" if done < total else f"all {total} cells finished") + \
        f"; seeds {', '.join(map(str, seeds))}; " + _cost(engines)
    if len(engines) > 1:
        note += "; studies " + ", ".join(e.study.name for e in engines)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadablePredictions)
        files = write_report(records, Path(out) if out else work / "report", title=title,
                             command=command or f"medpeft study run {path} && medpeft study report {path}",
                             baseline=baseline, rows=rows, anchors=anchors, note=note,
                             baseline_backbone=study.report.baseline_backbone)
        tables = report_tables(records, title=title, baseline=baseline, rows=rows, anchors=anchors)
    _show_warnings(caught, console)
    for table in tables.values():
        table.print(console, fmt)
    if fmt == "table":
        console.print(f"report: {files.markdown}, {files.html} ({note})")
    return files.all()


def _show_warnings(caught: list[warnings.WarningMessage], console: Console) -> None:
    """A report's unreadable predictions files, each named once (the report reads them for every
    table); any other warning goes on as it would have."""
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UnreadablePredictions)):
        print_warning(console, message)
    for w in caught:
        if not issubclass(w.category, UnreadablePredictions):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _report_diffusion(path, *, also, **options) -> list[Path]:
    from .generative_report import report_diffusion_study

    if also:
        raise ValueError(f"{path} is a diffusion study; --with joins the tables of classifier studies only")
    return report_diffusion_study(path, **options)
