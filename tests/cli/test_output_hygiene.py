"""Output hygiene: errors and warnings on stderr, results on stdout; strict JSON (NaN -> null)
everywhere medpeft writes JSON, read back as NaN; Python warnings without source lines; every
skipped predict input listed, dangling links too; --nproc capped by the usable CPU cores."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings

import numpy as np
import pytest

import medpeft.cli.inference
from medpeft.cli import main
from medpeft.inference import gather_images
from medpeft.runtime import RunDir
from medpeft.serialization import dumps_json, save_json

from ..runs import PNEUMONIA, VIT28, train, write_png


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("hygiene") / "run", data=PNEUMONIA, backbone=VIT28, steps=2)


def test_an_eval_error_goes_to_stderr_and_csv_to_stdout(run, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "not-a-run"), "--format", "csv"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error:")
    assert main(["eval", str(run), "--format", "csv", "--n-bootstrap", "0"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows[0] and all(len(row) == len(rows[0]) for row in rows)
    assert "error" not in captured.out and "warning:" not in captured.out


def test_every_json_medpeft_writes_is_strict(run, tmp_path):
    for name in ("metrics.json", "adapter_config.json"):
        _strict((run / name).read_text())
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    _strict((tmp_path / "export" / "config.json").read_text())
    values = {"auroc": math.nan, "auroc_ci95": [math.nan, math.inf], "n": 3, "history": [{"val_auroc": math.nan}],
              "note": None, "x": np.float64("nan")}
    assert _strict(dumps_json(values)) == {"auroc": None, "auroc_ci95": [None, None], "n": 3,
                                           "history": [{"val_auroc": None}], "note": None, "x": None}
    save_json(tmp_path / "r" / "metrics.json", values)
    back = RunDir(tmp_path / "r").load_metrics()  # read back as the NaN it was
    assert math.isnan(back["auroc"]) and all(math.isnan(v) for v in back["auroc_ci95"])
    assert math.isnan(back["history"][0]["val_auroc"]) and back["note"] is None and back["n"] == 3


def test_python_warnings_are_one_line_without_source(monkeypatch, capsys):
    def warns(args):
        warnings.warn("skipped 2 bad item(s) (--skip-bad)", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(medpeft.cli.inference, "cmd_eval", warns)
    parser_default = main.__globals__["build_parser"]
    monkeypatch.setitem(main.__globals__, "build_parser", lambda: _with_func(parser_default(), warns))
    with warnings.catch_warnings():
        assert main(["eval", "somewhere"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "warning: skipped 2 bad item(s) (--skip-bad)" and captured.out == ""


def _with_func(parser, func):
    original = parser.parse_args

    def parse(argv):
        args = original(argv)
        args.func = func
        return args

    parser.parse_args = parse
    return parser


def test_every_skipped_predict_input_is_listed_dangling_links_too(run, tmp_path, capsys):
    folder = tmp_path / "in"
    write_png(folder / "a.png", np.zeros((28, 28), np.uint8))
    os.symlink(tmp_path / "gone.png", folder / "link.png")
    (folder / "notes.txt").write_text("x")
    (folder / ".DS_Store").write_text("x")
    os.symlink(tmp_path / "gone2.png", tmp_path / "given.png")
    files, problems = gather_images([folder, tmp_path / "given.png"])
    assert files == [folder / "a.png"]
    reasons = dict(problems)
    assert "target does not exist" in reasons[str(folder / "link.png")]
    assert "target does not exist" in reasons[str(tmp_path / "given.png")]
    assert "not an image type" in reasons[str(folder / "notes.txt")] and reasons[str(folder / ".DS_Store")] == "hidden file"
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "skipped 3 file(s)" in printed and "link.png" in printed and "notes.txt" in printed


def test_nproc_above_the_usable_cores_is_refused(tmp_path, capsys):
    cores = len(os.sched_getaffinity(0))
    assert main(["finetune", "--data", "synthetic-cxr?n=64&size=16", "--device", "cpu", "--nproc", str(cores + 1),
                 "--out", str(tmp_path / "r")]) == 2
    assert f"--nproc {cores + 1} is more than the {cores} CPU core(s)" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "r").exists()
