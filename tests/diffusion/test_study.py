"""A tiny diffusion study end to end: base model and judge made once, cells claimed from the
same Optuna storage as classifier studies, the generative table written from the storage."""
from __future__ import annotations

import csv

import yaml

from medpeft.studies.generative import DIFFUSION, load_diffusion_study
from medpeft.studies.generative_report import report_diffusion_study
from medpeft.studies.runner import run_worker

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
