"""The study engine: a grid end to end, workers that never share a cell (SQLite and PostgreSQL),
a search whose pruner stops the bad region, SIGKILL then resume, and bad inputs that lose nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from medpeft.cli import main
from medpeft.studies.engine import Engine
from medpeft.studies.runner import prepare, run_study
from medpeft.studies.spec import cells, load_study

from .conftest import TINY_BACKBONE, TINY_DATA, write_study

QUIET = Console(quiet=True)


def printed(capsys) -> str:
    """Everything the command printed: results on stdout, errors and warnings on stderr."""
    captured = capsys.readouterr()
    return captured.out + captured.err


def trials(path):
    engine = Engine(load_study(path), Path(path).parent)
    return engine, engine.final.get_trials(deepcopy=False)


def test_a_grid_runs_end_to_end_and_a_second_run_does_nothing(tmp_path):
    path = write_study(tmp_path / "grid")
    assert main(["study", "run", path]) == 0
    engine, first = trials(path)
    records = engine.records()
    assert len(records) == 4 and len(first) == 4
    assert {(r["label"], r["fraction"]) for r in records} == {("FFT", 0.5), ("FFT", 1.0), ("LoRA", 0.5), ("LoRA", 1.0)}
    for record in records:
        assert (Path(record["run_dir"]) / "metrics.json").is_file()  # an ordinary run directory
        assert 0.0 <= record["metrics"]["test"]["auroc"] <= 1.0
        assert "history" not in record["metrics"]
    assert main(["eval", records[0]["run_dir"], "--n-bootstrap", "0"]) == 0
    assert main(["study", "report", path, "--out", str(tmp_path / "report")]) == 0
    minutes = sum(r["metrics"]["wall_time_s"] for r in records) / 60
    first_lines = (tmp_path / "report" / "report.md").read_text().splitlines()[:3]
    assert f"all 4 cells finished; seeds 0; cells {minutes:.1f} min (summed run times" in "\n".join(first_lines)
    assert main(["study", "run", path]) == 0
    assert len(trials(path)[1]) == 4  # nothing ran twice


def count_by_cell(all_trials):
    counts = {}
    for trial in all_trials:
        if trial.state == TrialState.COMPLETE:
            counts[trial.user_attrs["cell"]] = counts.get(trial.user_attrs["cell"], 0) + 1
    return counts


def two_workers(path, storage=None):
    study = load_study(path)
    engine = Engine(study, Path(path).parent, storage, console=QUIET)
    prepare(engine, QUIET)
    command = [sys.executable, "-m", "medpeft.cli", "study", "worker", path, "--threads", "1"]
    if storage:
        command += ["--storage", storage]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    return engine.final.get_trials(deepcopy=False), outputs


def split_checks(path, all_trials):
    expected = {c.key for c in cells(load_study(path))}
    assert count_by_cell(all_trials) == {key: 1 for key in expected}  # every cell once, none twice
    workers = {t.user_attrs["worker"] for t in all_trials if t.state == TrialState.COMPLETE}
    assert len(workers) == 2, workers  # both workers ran cells


SPLIT_STUDY = dict(fractions=[0.25, 0.5, 0.75, 1.0], seeds=[0, 1],
                   methods=[{"name": "fft", "label": "FFT"}], train={"epochs": 3, "batch_size": 16, "n_bootstrap": 0})


def test_two_workers_split_a_sqlite_study_without_duplicates(tmp_path):
    path = write_study(tmp_path / "split", name="split", **SPLIT_STUDY)
    all_trials, _ = two_workers(path)
    split_checks(path, all_trials)


def test_two_workers_split_a_postgresql_study_without_duplicates(tmp_path, postgres_url):
    url, name = postgres_url
    path = write_study(tmp_path / "split", name=name, **SPLIT_STUDY)
    all_trials, _ = two_workers(path, url)
    split_checks(path, all_trials)
    assert not (tmp_path / "split" / "study.db").exists()  # the shared server holds it


def test_a_search_prunes_its_bad_region(tmp_path):
    """lr 1e-9 cannot move a fresh ViT; ASHA (halving at every validation) must stop such trials."""
    path = write_study(
        tmp_path / "search", name="search", data=[{"spec": "medmnist:pneumoniamnist", "label": "pneu"}],
        fractions=[0.05], methods=[{"name": "fft", "label": "FFT"}],
        backbones=[{"label": "tiny", "backbone": {"name": "vit_tiny", "img_size": 28, "patch_size": 7,
                                                   "timm_kwargs": {"depth": 1}, "drop_path": 0.0}}],
        train={"epochs": 4, "batch_size": 32, "n_bootstrap": 0, "layer_decay": 1.0, "warmup_epochs": 0,
               "min_lr": 0.0},
        search={"trials": 6, "pruner": "asha", "reduction_factor": 2, "patience": None,
                "space": {"FFT": {"lr": {"choices": [1.0e-9, 1.0e-3]}}}})
    study = load_study(path)
    engine = Engine(study, tmp_path / "search", console=QUIET)
    engine.work()
    search = engine.search_study(engine.cells[0].group)
    states = [t.state for t in search.get_trials(deepcopy=False)]
    pruned = [t for t in search.get_trials(deepcopy=False) if t.state == TrialState.PRUNED]
    assert len(states) == 6 and len(pruned) >= 1
    assert all(t.params["lr"] == 1.0e-9 for t in pruned)  # only the bad region was pruned
    assert engine.search_result(engine.cells[0].group) == {"lr": 1.0e-3}
    cost = engine.compute_time()
    assert cost["search_trials"] == 6 and cost["search"] > 0 and cost["pretraining"] == {}
    records = engine.records()
    assert len(records) == 1 and records[0]["params"] == {"lr": 1.0e-3}


def test_sigkill_mid_trial_then_rerun_resumes_the_killed_run(tmp_path):
    folder = tmp_path / "kill"
    path = write_study(folder, name="kill", fractions=[1.0], methods=[{"name": "fft", "label": "FFT"}],
                       data=[{"spec": "synthetic-cxr?n=192&n_val=32&n_test=32&size=16", "label": "synth"}],
                       train={"epochs": 40, "batch_size": 16, "n_bootstrap": 0, "keep_checkpoint": True})
    engine = Engine(load_study(path), folder, console=QUIET)
    prepare(engine, QUIET)
    worker = subprocess.Popen([sys.executable, "-m", "medpeft.cli", "study", "worker", path, "--threads", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = folder / "runs" / engine.cells[0].key
    while not (run / "checkpoint-last.pt").exists() and worker.poll() is None:  # the worker ends by itself
        time.sleep(0.05)
    assert (run / "checkpoint-last.pt").exists(), f"the worker exited ({worker.returncode}) before its first checkpoint"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert not (run / "metrics.json").exists(), "the run finished before the kill; make it longer"
    assert engine.reap() == 1  # queued again: waiting, not reported as failed
    progress = engine.progress()
    assert (progress.done, progress.waiting, progress.failed, engine.failures()) == (0, 1, 0, [])
    assert run_study(path, console=QUIET) == 0
    all_trials = engine.final.get_trials(deepcopy=False)
    assert count_by_cell(all_trials) == {engine.cells[0].key: 1}
    assert [t.user_attrs.get("error") for t in all_trials if t.state == TrialState.FAIL] == ["worker process died"]
    log = (run / "log.txt").read_text()
    assert log.count("start:") == 1 and "resumed after epoch" in log  # resumed, not restarted


def test_a_corrupt_study_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "study.yaml").write_text("name: x\ndata: [\n")
    assert main(["study", "run", str(bad / "study.yaml")]) == 2
    assert "not valid YAML" in printed(capsys)
    path = write_study(tmp_path / "typo", methods=[{"name": "lorra"}])
    assert main(["study", "run", path]) == 2
    assert "unknown method 'lorra'. Did you mean 'lora'?" in " ".join(printed(capsys).split())
    path = write_study(tmp_path / "key", seedz=[1])
    assert main(["study", "run", path]) == 2
    assert "did you mean 'seeds'?" in printed(capsys)
    path = write_study(tmp_path / "space", search={"space": {"LoRA": {"rnak": {"choices": [2, 4]}}}})
    assert main(["study", "run", path]) == 2
    assert "search.space.LoRA.rnak: not searchable" in " ".join(printed(capsys).split())


def test_an_unreachable_database_is_a_clear_error_and_cannot_hang(tmp_path, capsys, monkeypatch):
    """A server that never answers must not hang `study run`: every connection medpeft opens hands
    the driver a connect timeout (seen here as the kwargs psycopg receives), and the refusal is
    one clear error with the password hidden."""
    import psycopg

    connects, real = [], psycopg.connect

    def recording(*args, **kwargs):  # SQLAlchemy's psycopg dialect connects through psycopg.connect
        connects.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(psycopg, "connect", recording)
    path = write_study(tmp_path / "db")
    code = main(["study", "run", path, "--storage", "postgresql://user:secret@127.0.0.1:9/nodb"])
    assert code == 2
    assert connects and all((c["host"], c["port"]) == ("127.0.0.1", 9) for c in connects)  # the driver was reached
    timeouts = [c.get("connect_timeout") for c in connects]
    assert all(isinstance(t, int) and 0 < t <= 30 for t in timeouts), timeouts
    out = printed(capsys)
    assert "cannot open the study storage postgresql+psycopg://user:***@127.0.0.1:9/nodb" in out
    assert "secret" not in out


def test_a_cell_with_missing_data_fails_alone_and_loses_nothing(tmp_path, capsys):
    empty = tmp_path / "nodata"
    empty.mkdir()
    path = write_study(tmp_path / "missing", data=[{"spec": TINY_DATA, "label": "synth"},
                                                   {"spec": "medmnist:breastmnist", "label": "breast",
                                                    "data_root": str(empty)}],
                       fractions=[1.0], methods=[{"name": "fft", "label": "FFT"}])
    assert main(["study", "run", path]) == 1
    out = " ".join(printed(capsys).split())
    assert "1/2 cells done" in out and "MedMNIST file not found" in out
    engine, first = trials(path)
    done = [t for t in first if t.state == TrialState.COMPLETE]
    assert len(done) == 1
    assert main(["study", "run", path]) == 1  # retried, fails again, the finished cell is kept
    engine, second = trials(path)
    assert [t.number for t in second if t.state == TrialState.COMPLETE] == [done[0].number]


def test_a_pretraining_step_runs_once_and_its_cells_fine_tune_from_it(tmp_path, forbid):
    backbone = {"name": "vit_tiny", "img_size": 16, "patch_size": 4, "timm_kwargs": {"depth": 1}}
    path = write_study(tmp_path / "mae", name="mae", fractions=[1.0],
                       backbones=[{"label": "tiny MAE", "backbone": backbone,
                                   "pretrain": {"name": "study-mae", "mae": {"decoder_dim": 32, "decoder_depth": 1,
                                                                             "decoder_heads": 2},
                                                "train": {"epochs": 1, "batch_size": 32, "figure_images": 0,
                                                          "val_images": 8}}}])
    assert run_study(path, console=QUIET) == 0
    engine, first = trials(path)
    records = engine.records()
    assert len(records) == 2
    for record in records:
        config = (Path(record["run_dir"]) / "config.yaml").read_text()
        assert "checkpoint: study-mae" in config
        assert "loaded" in (Path(record["run_dir"]) / "log.txt").read_text()  # the MAE weights were loaded
    assert (Path(os.environ["MEDPEFT_CACHE"]) / "checkpoints" / "study-mae" / "checkpoint.pth").is_file()
    cost = engine.compute_time()  # what the report's first line says the results cost
    assert cost["cells"] == pytest.approx(sum(r["metrics"]["wall_time_s"] for r in records)) and cost["cells"] > 0
    assert list(cost["pretraining"]) == ["study-mae"] and cost["pretraining"]["study-mae"] > 0
    assert (cost["search"], cost["search_trials"]) == (0.0, 0)
    forbid("medpeft.pretrain.ensure.pretrain", "a cached pretraining step must not run again")
    assert run_study(path, console=QUIET) == 0


def test_two_studies_that_mean_different_things_by_one_checkpoint_name_are_stopped(tmp_path, capsys):
    # a pretraining step without `data` pretrains on its study's first dataset: the same name in a
    # study whose first dataset differs is another foundation model, and must not replace the first
    backbone = {"name": "vit_tiny", "img_size": 16, "patch_size": 4, "timm_kwargs": {"depth": 1}}
    step = {"name": "shared-mae", "mae": {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
            "train": {"epochs": 1, "batch_size": 32, "figure_images": 0, "val_images": 8}}
    first = write_study(tmp_path / "first", name="first", fractions=[1.0], methods=[{"name": "fft", "label": "FFT"}],
                        backbones=[{"label": "MAE", "backbone": backbone, "pretrain": step}])
    assert run_study(first, console=QUIET) == 0
    made = Path(os.environ["MEDPEFT_CACHE"]) / "checkpoints" / "shared-mae" / "checkpoint.pth"
    before = made.read_bytes()
    other_data = [{"spec": "synthetic-cxr?n=96&n_val=48&n_test=64&size=16&seed=5", "label": "other"}]
    second = write_study(tmp_path / "second", name="second", fractions=[1.0], data=other_data,
                         methods=[{"name": "fft", "label": "FFT"}],
                         backbones=[{"label": "MAE", "backbone": backbone, "pretrain": step}])
    capsys.readouterr()
    assert main(["study", "run", second]) == 2
    out = " ".join(printed(capsys).split())
    assert "'shared-mae'" in out and "data.specs" in out and "another name" in out
    assert made.read_bytes() == before
    assert not (tmp_path / "second" / "runs").exists() or not any((tmp_path / "second" / "runs").iterdir())


def test_identical_cells_of_another_study_are_copied_not_trained(tmp_path, monkeypatch):
    first = write_study(tmp_path / "first", name="first", fractions=[1.0])
    assert run_study(first, console=QUIET) == 0
    donors = {r["label"]: Path(r["run_dir"]) for r in Engine(load_study(first), tmp_path / "first").records()}
    # the same cells under other labels, one more method, and a reuse list with a missing folder
    second = write_study(tmp_path / "second", name="second", fractions=[1.0], reuse=["../nowhere", "../first"],
                         backbones=[{"label": "renamed", "backbone": TINY_BACKBONE}],
                         methods=[{"name": "fft", "label": "full FT"}, {"name": "lora", "label": "LoRA r2", "options": {"rank": 2}},
                                  {"name": "lora", "label": "LoRA r4", "options": {"rank": 4}}])
    # a run of the donor whose config was edited since is not the same run, whatever its name says
    tampered = donors["LoRA"] / "config.yaml"
    tampered.write_text(tampered.read_text().replace("rank: 2", "rank: 3"))
    trained = []
    real = Engine.train_cell

    def counting(self, cell, path, on_validation):
        trained.append(cell.method)
        return real(self, cell, path, on_validation)

    monkeypatch.setattr(Engine, "train_cell", counting)
    console = Console(record=True, width=200)
    engine = Engine(load_study(second), tmp_path / "second", console=console)
    prepare(engine, QUIET)
    engine.work()
    assert sorted(trained) == ["LoRA r2", "LoRA r4"]  # FFT copied; LoRA r2's donor was edited
    said = console.export_text()
    assert said.count("reuse: ../nowhere is not a folder") == 1 and "../first is not" not in said
    records = {r["label"]: r for r in engine.records()}
    copied = Path(records["full FT"]["run_dir"])
    assert records["full FT"]["reused_from"] == str(donors["FFT"].resolve())
    assert records["full FT"]["metrics"] == {k: v for k, v in
                                             json.loads((donors["FFT"] / "metrics.json").read_text()).items()
                                             if k != "history"}
    assert (copied / "predictions-test.npz").read_bytes() == (donors["FFT"] / "predictions-test.npz").read_bytes()
    assert "copied from" in (copied / "log.txt").read_text()
    assert "copied from" not in (donors["FFT"] / "log.txt").read_text()  # the donor's log is untouched
    assert records["LoRA r2"]["reused_from"] is None
    assert engine.compute_time()["reused"] == 1
    # the time left is estimated from the trained cells only (a copy takes no time)
    trials = optuna.load_study(study_name="second", storage=engine.storage).get_trials()
    took = [t.user_attrs["seconds"] for t in trials if "reused_from" not in t.user_attrs]
    assert len(took) == 2 and engine.progress().mean_seconds == pytest.approx(sum(took) / 2)


def test_the_searched_configuration_is_in_the_report(tmp_path):
    from medpeft.studies.report import results_rows
    records = [{"dataset": "d", "fraction": 1.0, "label": "L", "method": "lora", "backbone": "b", "seed": 0,
                "variant": {}, "params": {"lr": 0.001, "rank": 4}, "run_dir": "r",
                "metrics": {"test": {"auroc": 0.9, "acc": 0.8, "f1_macro": 0.7}, "steps": 100}}]
    columns, rows = results_rows(records)
    row = dict(zip(columns, rows[0]))
    assert (row["searched_lr"], row["searched_rank"]) == ("0.001", "4")


CLAIMER = """
import fcntl, json, os, sys
from pathlib import Path
from medpeft.studies.engine import Engine
from medpeft.studies.spec import load_study
rounds, storage = json.loads(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)
for path, log, mode in rounds:
    engine = Engine(load_study(path), Path(path).parent, storage)
    engine.final  # opened before the barrier: only the claims race
    print("ready", flush=True)
    sys.stdin.readline()  # the barrier: the parent says go once every claimant is ready
    out = os.open(log, os.O_WRONLY | os.O_APPEND)  # small appends are atomic: the file is the global order

    def claim_six():
        for _ in range(6):
            os.write(out, f"enter {os.getpid()}\\n".encode())
            if mode == "unlocked":  # optuna's pop alone, without the engine's claim lock
                trial = engine.final.ask()
            else:
                with engine.claiming():
                    trial = engine.final.ask()
            os.write(out, f"exit {os.getpid()} {trial.number}\\n".encode())

    if mode == "serial":  # claims serialised by hand: each process claims alone, one after another
        with open(path + ".serial", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            claim_six()
    else:
        claim_six()
    os.close(out)
"""


def race(tmp_path, modes, storage=None, name="race", processes=4):
    """Rounds of claims, one per mode, by the same ``processes`` claimant processes (medpeft is
    imported once): in each round every claimant claims 6 of a fresh study's 30 waiting trials
    as soon as all of them are ready (a real barrier, not a time). Returns per round the most
    claimants that were inside a claim at once (replayed from their shared log of enter/exit
    lines) and the trial numbers claimed."""
    rounds = []
    for i, mode in enumerate(modes):
        folder = tmp_path / f"race-{i}"
        path = write_study(folder, name=f"{name}{i}", fractions=[0.2, 0.4, 0.6, 0.8, 1.0], seeds=[0, 1, 2])
        engine = Engine(load_study(path), folder, storage, console=QUIET)
        prepare(engine, QUIET)
        assert len(engine.final.get_trials(states=(TrialState.WAITING,))) == 30
        (folder / "claims.log").touch()
        rounds.append((path, str(folder / "claims.log"), mode))
    extra = [storage] if storage else []
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, json.dumps(rounds), *extra],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        for _ in rounds:
            for proc in procs:
                assert proc.stdout.readline() == "ready\n", "a claimant died (its error is above)"
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
        for proc in procs:
            proc.communicate(timeout=300)
            assert proc.returncode == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for _, log, _ in rounds:
        inside, most, claimed = set(), 0, []
        for line in Path(log).read_text().splitlines():
            kind, pid, *number = line.split()
            if kind == "enter":
                inside.add(pid)
                most = max(most, len(inside))
            else:
                inside.discard(pid)
                claimed.append(int(number[0]))
        results.append((most, claimed))
    return results


def test_concurrent_claims_never_pop_one_trial_twice(tmp_path):
    """Optuna's pop is SELECT ... FOR UPDATE, which SQLite ignores: without the engine's claim lock
    two workers popped the same trial in a real run. Four processes claim at once, and are seen
    inside a claim together. Two controls show that each check can fail: claims serialised by hand
    are seen as never overlapping, and optuna's pop without the claim lock does claim trials twice
    (it did in every one of 27 rounds tried, on one core and on two; three rounds are run)."""
    rounds = race(tmp_path, ["locked", "serial", "unlocked", "unlocked", "unlocked"])
    (most, claimed), (serial_most, serial_claimed), *unlocked = rounds
    assert most >= 2, "the claimants never claimed at the same time: this race tested nothing"
    assert len(claimed) == 24
    assert len(set(claimed)) == 24, f"a trial was claimed twice: {sorted(claimed)}"
    assert serial_most == 1 and len(serial_claimed) == len(set(serial_claimed)) == 24
    twice = [len(numbers) - len(set(numbers)) for _, numbers in unlocked]
    assert all(m >= 2 for m, _ in unlocked) and sum(twice) > 0, twice


def test_concurrent_claims_on_postgresql_are_atomic_by_themselves(tmp_path, postgres_url):
    url, name = postgres_url
    [(most, claimed)] = race(tmp_path, ["locked"], url, name)
    assert most >= 2, "the claimants never claimed at the same time: this race tested nothing"
    assert len(claimed) == 24
    assert len(set(claimed)) == 24, f"a trial was claimed twice: {sorted(claimed)}"


def test_the_start_up_trials_of_a_search_spread_over_the_range():
    """With the default search seed, the old per-trial seeds 0, 1, 2, 3 gave RandomState first
    draws of 0.55, 0.42, 0.44, 0.55: every method's four learning rates fell in 15% of the log
    range. Mixed seeds must spread them (and keep them reproducible)."""
    import math

    from medpeft.studies.search import trial_sampler

    def draws(seed):
        study = optuna.create_study(direction="maximize")
        units = []
        for _ in range(4):
            trial = study.ask()
            study.sampler = trial_sampler(seed, trial.number)
            units.append((math.log10(trial.suggest_float("lr", 1e-4, 1e-2, log=True)) + 4) / 2)
            study.tell(trial, 0.5)
        return units

    first = draws(0)
    assert max(first) - min(first) > 0.3, first
    assert draws(0) == first and draws(1) != first


def test_the_slices_of_one_study_report_as_one_table(tmp_path, capsys):
    import csv
    import yaml
    write_study(tmp_path / "full", methods=[{"name": "fft", "label": "FFT"}])
    for name, fraction in (("half", 0.5), ("all", 1.0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.yaml").write_text(yaml.safe_dump({"extends": "../full", "name": name,
                                                                    "fractions": [fraction]}))
        assert main(["study", "run", str(tmp_path / name)]) == 0
        assert main(["study", "report", str(tmp_path / name), "--out", str(tmp_path / f"report-{name}")]) == 0

    def table(folder):
        return list(csv.DictReader((folder / "table-auroc.csv").open()))

    assert main(["study", "report", str(tmp_path / "half"), "--with", str(tmp_path / "all"),
                 "--title", "the full study", "--out", str(tmp_path / "joined")]) == 0
    joined = table(tmp_path / "joined")
    assert len(joined) == 1 and joined[0]["synth 50%"] == table(tmp_path / "report-half")[0]["synth 50%"]
    assert joined[0]["synth 100%"] == table(tmp_path / "report-all")[0]["synth 100%"]
    text = (tmp_path / "joined" / "report.md").read_text()
    assert text.startswith("# the full study\n") and "all 2 cells finished" in text and "studies half, all" in text
    assert f"medpeft study run {tmp_path / 'half'} && medpeft study run {tmp_path / 'all'} && " in text
    capsys.readouterr()
    assert main(["study", "report", str(tmp_path / "half"), "--with", str(tmp_path / "half")]) == 2
    assert "both have a result for synth 0.5 tiny FFT seed 0" in " ".join(printed(capsys).split())
