"""A tiny diffusion study end to end: base model and judge made once, cells claimed from the
same Optuna storage as classifier studies, the generative table written from the storage; the one
`medpeft study` command tree runs it, knowing its kind from the file."""
from __future__ import annotations

import csv
import subprocess

import pytest
import yaml

from medpeft.cli import main
from medpeft.studies import supervise
from medpeft.studies.generative import DIFFUSION, load_diffusion_study
from medpeft.studies.generative_report import report_diffusion_study
from medpeft.studies.runner import CLASSIFIER, kind_of, run_worker

from .conftest import TINY_DATA, tiny_values


def test_a_tiny_study_runs_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    base = tiny_values()
    study = {"name": "tiny-diffusion", "base": {"name": "tiny-base", "config": base},
             "judge": {"name": "judge", "config": {
                 "data": {"spec": TINY_DATA}, "method": "fft",
                 "backbone": {"name": "vit_tiny", "img_size": 16, "patch_size": 4,
                              "timm_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2}},
                 "train": {"epochs": 1, "batch_size": 16, "n_bootstrap": 0, "device": "cpu"}}},
             "data": {"spec": TINY_DATA, "label": "Tiny"}, "fractions": [0.5], "seeds": [0],
             "methods": [{"name": "bias", "label": "Bias"}, {"name": "lora", "options": {"rank": 2}}],
             "train": {"steps": 2, "batch_size": 16, "val_images": 8, "device": "cpu"},
             "sample": {"steps": 2, "grid_images": 2, "grid_prompts": 1}, "score": {"images": 12}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert len(DIFFUSION.engine(load_diffusion_study(path), tmp_path).cells) == 3  # no adaptation + 2 methods
    assert run_worker(path, kind=DIFFUSION) == 0
    files = report_diffusion_study(path, out=tmp_path / "report", fmt="md")
    report = files[0].read_text()
    for row in ("No adaptation", "Bias", "lora", "Real vs real (floor)", "Tiny 50%", "Conditional accuracy"):
        assert row in report
    rows = list(csv.DictReader(files[1].open()))
    assert len(rows) == 3 and {r["label"] for r in rows} == {"No adaptation", "Bias", "lora"}
    assert all(float(r["fd"]) >= 0 for r in rows)


def test_cell_keys_come_from_what_the_study_file_declares(tmp_path, monkeypatch):
    """An upgrade that adds a config option with a default keeps finished cells; editing what a cell
    trains with makes new ones."""
    from medpeft.diffusion import DiffusionConfig

    study = {"name": "keys", "base": {"name": "b", "config": tiny_values()},
             "judge": {"name": "judge", "config": {"data": {"spec": TINY_DATA}, "method": "fft",
                                                   "backbone": {"name": "vit_tiny", "img_size": 16}}},
             "data": {"spec": TINY_DATA}, "fractions": [0.5, 1.0], "seeds": [0, 1],
             "methods": [{"name": "bias"}, {"name": "lora", "options": {"rank": 2}}], "train": {"steps": 2}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    keys = [c.key for c in DIFFUSION.engine(load_diffusion_study(path), tmp_path).cells]
    assert len(keys) == len(set(keys)) == 2 * (1 + 2 * 2)
    upgraded = DiffusionConfig.to_dict
    monkeypatch.setattr(DiffusionConfig, "to_dict", lambda self: {**upgraded(self), "new_option": 1})
    assert [c.key for c in DIFFUSION.engine(load_diffusion_study(path), tmp_path).cells] == keys
    path.write_text(yaml.safe_dump({**study, "train": {"steps": 3}}))
    edited = [c.key for c in DIFFUSION.engine(load_diffusion_study(path), tmp_path).cells]
    assert set(edited) & set(keys) == {k for k in keys if "No-adaptation" in k}  # trains nothing either way
    assert len(set(edited) - set(keys)) == 2 * 2 * 2


def judge_values() -> dict:
    return {"data": {"spec": TINY_DATA}, "method": "fft",
            "backbone": {"name": "vit_tiny", "img_size": 16, "patch_size": 4,
                         "timm_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2}},
            "train": {"epochs": 1, "batch_size": 16, "n_bootstrap": 0, "device": "cpu"}}


def test_the_study_commands_run_a_diffusion_study_file(tmp_path, monkeypatch, capsys):
    """A diffusion study file without `kind:` (as they were written before it existed): `medpeft
    study run` starts `medpeft study worker` processes (run in this process here), then `status`
    and `report` (the generative table) read the same storage."""
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    study = {"name": "cli-diffusion", "base": {"name": "tiny-base-cli", "config": tiny_values()},
             "judge": {"name": "judge", "config": judge_values()},
             "data": {"spec": TINY_DATA, "label": "Tiny"}, "fractions": [0.5], "seeds": [0],
             "no_adaptation": False, "methods": [{"name": "bias", "label": "Bias"}],
             "train": {"steps": 2, "batch_size": 16, "val_images": 8, "device": "cpu"},
             "sample": {"steps": 2, "grid_images": 2, "grid_prompts": 1}, "score": {"images": 12}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert kind_of(path) is DIFFUSION and kind_of(tmp_path) is DIFFUSION
    spawned = []

    class InProcess:
        """A worker process run to its end in this process: the command `study run` spawns."""

        pid = 0

        def __init__(self, command, **kwargs):
            spawned.append(command[1:])
            self.code = main(command[3:])

        def poll(self):
            return self.code

        wait = poll
        returncode = property(poll)

    monkeypatch.setattr(supervise, "subprocess", type("Subprocess", (), {"Popen": InProcess,
                                                                         "STDOUT": subprocess.STDOUT}))
    assert main(["study", "run", str(path), "--threads", "1"]) == 0
    assert spawned == [["-m", "medpeft.cli", "study", "worker", str(path), "--dir", str(tmp_path),
                        "--threads", "1", "--id", "1"]]
    assert "1/1 cells done" in capsys.readouterr().out
    assert main(["study", "worker", str(path)]) == 0  # nothing left to claim
    assert main(["study", "status", str(path)]) == 0
    assert "1/1 done" in capsys.readouterr().out
    out = tmp_path / "report"
    assert main(["study", "report", str(path), "--out", str(out), "--format", "md"]) == 0
    report = (out / "report.md").read_text()
    assert f"Made by: `medpeft study run {path} && medpeft study report {path} --out {out} --format md`" in report
    assert "Bias" in report and "Tiny 50%" in report and "Conditional accuracy" in report
    assert main(["study", "report", str(path), "--with", str(path)]) == 2
    assert "--with joins the tables of classifier studies only" in capsys.readouterr().err


def test_kind_says_what_a_study_file_is_and_keeps_cell_keys(tmp_path):
    """`kind: diffusion` is the same study as none (old files: base and judge say it); an unknown kind
    or the other kind's reader is a clear error."""
    study = {"name": "kinds", "base": {"name": "b", "config": tiny_values()},
             "judge": {"name": "judge", "config": {"data": {"spec": TINY_DATA}, "method": "fft",
                                                   "backbone": {"name": "vit_tiny", "img_size": 16}}},
             "data": {"spec": TINY_DATA}, "fractions": [0.5], "methods": [{"name": "bias"}]}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    keys = [c.key for c in DIFFUSION.engine(load_diffusion_study(path), tmp_path).cells]
    path.write_text(yaml.safe_dump({**study, "kind": "diffusion"}))
    assert kind_of(path) is DIFFUSION
    assert [c.key for c in DIFFUSION.engine(load_diffusion_study(path), tmp_path).cells] == keys
    with pytest.raises(ValueError, match="a diffusion study, not a classifier study"):
        CLASSIFIER.load(path)
    path.write_text(yaml.safe_dump({**study, "kind": "classifier"}))
    assert kind_of(path) is CLASSIFIER
    with pytest.raises(ValueError, match="a classifier study, not a diffusion study"):
        load_diffusion_study(path)
    path.write_text(yaml.safe_dump({**study, "kind": "gan"}))
    for read in (kind_of, load_diffusion_study, CLASSIFIER.load):
        with pytest.raises(ValueError, match="unknown study kind 'gan'; kind must be one of classifier, diffusion"):
            read(path)


@pytest.mark.parametrize("command", ["run", "worker", "status", "report"])
def test_an_unknown_kind_is_exit_2_with_the_two_kinds(command, tmp_path, capsys):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"name": "x", "kind": "gan", "methods": []}))
    assert main(["study", command, str(tmp_path)]) == 2
    out = capsys.readouterr().err  # errors go to stderr
    assert "unknown study kind 'gan'" in out and "classifier, diffusion" in out and "Traceback" not in out
