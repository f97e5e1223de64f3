"""Hostile study files and damaged study folders (issue 27, item 4): each class of fault is one
clear line naming the file and what is wrong, at load time and through the CLI (exit 2, no
traceback), and a damaged predictions file costs a report its cell's bootstrap CI, not the report.

Classes: a search bound refused by the training config's checks, by the method's own option
checks, a float range of a whole-number option, two ranges that fail only together (and two that
do not: no false alarm), a report baseline that is no row, a study file that is empty or no
mapping or lacks required keys (also through ``extends``), and an unreadable
``predictions-test.npz`` of any kind (truncated, corrupt, empty, a lone array, pickled objects,
a missing array).
"""
from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from medpeft.cli import main
from medpeft.runtime.metrics import macro_auroc
from medpeft.studies.engine import Engine
from medpeft.studies.grid import UnreadablePredictions, build_grid, load_predictions
from medpeft.studies.spec import load_study

from .conftest import write_study

LR = {"low": 1.0e-4, "high": 1.0e-2, "log": True}


def cli(capsys, *args) -> tuple[int, str]:
    """Exit code and everything printed (stdout and stderr: errors and warnings go to stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def refused(capsys, path, *parts) -> str:
    """The study file fails at load and at `study run` / `study report`, each time with one
    error naming the file and every one of ``parts``, exit 2 and no traceback."""
    with pytest.raises(ValueError) as err:
        load_study(path)
    message = " ".join(str(err.value).split())
    assert message.startswith(f"{path}: ") and all(part in message for part in parts), message
    for command in ("run", "report"):
        code, shown = cli(capsys, "study", command, str(path))
        assert code == 2 and "Traceback" not in shown, shown
        assert shown.count("error:") == 1 and all(part in shown for part in (str(path), *parts)), shown
    return message


# --- search spaces: every value a trial can draw passes the checks it will meet -----------------

def test_a_bound_the_training_config_refuses_fails_at_load(tmp_path, capsys):
    path = write_study(tmp_path / "lr", search={"trials": 2, "space": {"LoRA": {"lr": {"low": -1, "high": 0.1}}}})
    refused(capsys, path, "search.space.LoRA.lr: the low bound -1 fails for LoRA on tiny",
            "lr must be positive (or unset), got -1")
    path = write_study(tmp_path / "decay", search={"space": {"FFT": {"layer_decay": {"low": 0.5, "high": 1.5}}}})
    refused(capsys, path, "search.space.FFT.layer_decay: the high bound 1.5 fails for FFT on tiny",
            "layer_decay must be in (0, 1], got 1.5")
    path = write_study(tmp_path / "batch", search={"space": {"LoRA": {"batch_size": {"choices": [16, 0]}}}})
    refused(capsys, path, "search.space.LoRA.batch_size: the choice 0 fails", "batch_size must be at least 1, got 0")


def test_a_bound_the_method_refuses_fails_at_load(tmp_path, capsys):
    path = write_study(tmp_path / "rank", search={"space": {"LoRA": {"rank": {"low": 0, "high": 8}}}})
    refused(capsys, path, "search.space.LoRA.rank: the low bound 0 fails for LoRA on tiny",
            "LoRA rank must be at least 1, got 0")
    # a space keyed by the method's name is checked on every row of that method
    path = write_study(tmp_path / "by-name", search={"space": {"lora": {"rank": {"choices": [4, 0]}}}})
    refused(capsys, path, "search.space.lora.rank: the choice 0 fails for LoRA on tiny")


def test_a_float_range_of_a_whole_number_option_fails_at_load(tmp_path, capsys):
    """A trial draws floats from a float range: rank 4.29 would fail 2 minutes into the study."""
    path = write_study(tmp_path / "float", search={"space": {"LoRA": {"rank": {"low": 2.0, "high": 8.0}}}})
    refused(capsys, path, "search.space.LoRA.rank: a value inside the range, 4.292 fails",
            "expected a whole number, got 4.292")


def test_ranges_that_fail_only_together_are_named_together_and_others_load(tmp_path, capsys):
    together = {"lr": LR, "min_lr": {"low": 1.0e-5, "high": 1.0e-3}}
    path = write_study(tmp_path / "together", search={"space": {"LoRA": together}})
    refused(capsys, path, "search.space.LoRA: the values lr 0.0001, min_lr 0.001 fail together for LoRA on tiny",
            "min_lr 0.001 is above the peak learning rate 0.0001")
    # min_lr up to 1e-3 is above the method's default peak lr, but never above a searched lr >= 1e-2
    fine = {"lr": {"low": 1.0e-2, "high": 1.0e-1, "log": True}, "min_lr": {"low": 1.0e-5, "high": 1.0e-3},
            "rank": {"choices": [2, 4]}, "warmup_epochs": {"low": 0, "high": 3}}
    study = load_study(write_study(tmp_path / "fine", search={"space": {"LoRA": fine}}))
    assert set(study.search.space["LoRA"]) == set(fine)


# --- the report's baseline ---------------------------------------------------------------------

def test_a_baseline_that_is_no_row_fails_at_load_naming_the_rows(tmp_path, capsys):
    path = write_study(tmp_path / "nope", report={"baseline": "Nope"})
    refused(capsys, path, "report.baseline 'Nope' is no row of the study",
            "method labels (FFT, LoRA) or method names (fft, lora)")
    assert load_study(write_study(tmp_path / "label", report={"baseline": "LoRA"})).report.baseline == "LoRA"
    assert load_study(write_study(tmp_path / "name", report={"baseline": "lora"})).report.baseline == "lora"
    assert load_study(write_study(tmp_path / "none", report={"baseline": None})).report.baseline is None
    # no baseline given: the default (fft) may be absent; the report says it shows no differences
    only_lora = [{"name": "lora", "label": "LoRA"}]
    assert load_study(write_study(tmp_path / "default", methods=only_lora)).report.baseline == "fft"


# --- the file's shape --------------------------------------------------------------------------

SHAPE = "a study file is a YAML mapping with at least name, data and methods"


@pytest.mark.parametrize("text, what", [("", "this one is empty"), ("# nothing yet\n", "this one is empty"),
                                        ("- name: x\n- data: y\n", "this one is a list"),
                                        ("hello\n", "this one is a string"), ("5\n", "this one is a number")])
def test_an_empty_or_non_mapping_study_file_gets_one_sentence(tmp_path, capsys, text, what):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    message = refused(capsys, path, SHAPE, what)
    assert "__init__" not in message and "positional" not in message


def test_missing_required_keys_are_named(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\nfractions: [0.1]\n")
    message = refused(capsys, path, SHAPE, "this one has no data, methods")
    assert "__init__" not in message


def test_extending_a_file_that_is_no_mapping_names_that_file(tmp_path, capsys):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "study.yaml").write_text("- just a list\n")
    path = write_study(tmp_path / "slice", extends="../base")
    with pytest.raises(ValueError, match=r"base/study\.yaml: a study file is a YAML mapping .* this one is a list"):
        load_study(path)
    code, shown = cli(capsys, "study", "run", path)
    assert code == 2 and "Traceback" not in shown and "this one is a list" in shown


# --- damaged predictions files -----------------------------------------------------------------

def saved_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 1))
    scores = np.round(labels * 0.5 + rng.random((40, 1)), 2).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "predictions-test.npz", scores=scores, labels=labels, task=np.array("binary"))
    return scores, labels


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def lone_array() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 1)))
    return buffer.getvalue()


DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "last bytes cut": lambda good: good[:-10],
    "bytes flipped": lambda good: good[:120] + bytes(b ^ 0xFF for b in good[120:160]) + good[160:],
    "empty": lambda good: b"",
    "text": lambda good: b"not an archive\n",
    "a lone array": lambda good: lone_array(),
    "pickled objects": lambda good: npz_bytes(scores=np.array([{"a": 1}], dtype=object), labels=np.zeros(1)),
    "no scores": lambda good: npz_bytes(labels=np.zeros((3, 1))),
    "scores of another shape": lambda good: npz_bytes(scores=np.zeros(3), labels=np.zeros((3, 1))),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_an_unreadable_predictions_file_is_named_and_read_as_absent(tmp_path, damage):
    scores, labels = saved_predictions(tmp_path / "run")
    path = tmp_path / "run" / "predictions-test.npz"
    loaded = load_predictions(tmp_path / "run")
    assert np.array_equal(loaded[0], scores) and np.array_equal(loaded[1], labels) and loaded[2] == "binary"
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.warns(UnreadablePredictions, match=r"predictions-test\.npz: unreadable test predictions") as caught:
        assert load_predictions(tmp_path / "run") is None
    assert str(path) in str(caught[0].message)


def test_a_cell_with_an_unreadable_file_falls_back_like_a_deleted_run(tmp_path):
    """Deleting a seed's run folder and truncating its predictions give the same cell: the CI of
    the mean of the seeds' own intervals instead of the bootstrap."""
    records = []
    for seed in (0, 1):
        scores, labels = saved_predictions(tmp_path / f"run-{seed}")
        records.append({"dataset": "synth", "fraction": 1.0, "method": "lora", "label": "LoRA", "backbone": "tiny",
                        "seed": seed, "run_dir": str(tmp_path / f"run-{seed}"),
                        "metrics": {"test": {"auroc": macro_auroc(scores, labels, "binary"),
                                             "auroc_ci95": [0.6 + seed / 10, 0.9]}}})
    cell = build_grid(records, "auroc", n_bootstrap=50).cells.popitem()[1]
    assert cell.ci_method == "bootstrap"
    shutil.rmtree(tmp_path / "run-1")
    deleted = build_grid(records, "auroc", n_bootstrap=50).cells.popitem()[1]
    saved_predictions(tmp_path / "run-1")
    path = tmp_path / "run-1" / "predictions-test.npz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.warns(UnreadablePredictions):
        damaged = build_grid(records, "auroc", n_bootstrap=50).cells.popitem()[1]
    assert (damaged.ci_method, damaged.ci) == (deleted.ci_method, deleted.ci) == ("seed-ci-mean", pytest.approx((0.65, 0.9)))


def test_study_report_names_a_truncated_predictions_file_and_reports_the_rest(tmp_path, capsys):
    path = write_study(tmp_path / "study", fractions=[1.0], seeds=[0, 1], report={"baseline": "FFT"})
    engine = Engine(load_study(path), Path(path).parent)
    assert engine.work() == 4  # four real 1-epoch cells, in this process
    records = {(r["label"], r["seed"]): r for r in engine.records()}
    damaged = Path(records[("LoRA", 0)]["run_dir"]) / "predictions-test.npz"
    damaged.write_bytes(damaged.read_bytes()[:300])
    code, shown = cli(capsys, "study", "report", path, "--out", str(tmp_path / "report"))
    assert code == 0 and "Traceback" not in shown
    assert f"warning: {damaged}: unreadable test predictions (BadZipFile" in shown
    assert shown.count(str(damaged)) == 1  # read for every table, named once
    with open(tmp_path / "report" / "cells.csv", newline="") as handle:
        cells = {(r["metric"], r["label"]): r for r in csv.DictReader(handle)}
    assert cells[("auroc", "LoRA")]["ci_method"] == "seed-ci-mean" and cells[("auroc", "LoRA")]["seeds"] == "2"
    assert cells[("auroc", "FFT")]["ci_method"] == "bootstrap"
    assert float(cells[("auroc", "LoRA")]["mean"]) == pytest.approx(
        (records[("LoRA", 0)]["metrics"]["test"]["auroc"] + records[("LoRA", 1)]["metrics"]["test"]["auroc"]) / 2)
    with open(tmp_path / "report" / "paired-auroc.csv", newline="") as handle:
        paired = list(csv.DictReader(handle))
    assert [(r["row"], r["reason"]) for r in paired] == [("LoRA", "predictions unreadable")]
    assert "n/a: predictions unreadable" in (tmp_path / "report" / "report.md").read_text()
    damaged.unlink()  # a run without saved predictions: the same cell, no warning, "not saved"
    code, shown = cli(capsys, "study", "report", path, "--out", str(tmp_path / "report"))
    assert code == 0 and "unreadable" not in shown and "warning:" not in shown
    with open(tmp_path / "report" / "cells.csv", newline="") as handle:
        again = {(r["metric"], r["label"]): r for r in csv.DictReader(handle)}
    assert again[("auroc", "LoRA")] == cells[("auroc", "LoRA")]
    with open(tmp_path / "report" / "paired-auroc.csv", newline="") as handle:
        assert [r["reason"] for r in csv.DictReader(handle)] == ["predictions not saved"]

