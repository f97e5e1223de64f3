"""medpeft export: every method's run is exported, merged ones as a plain timm model that timm
alone loads, and the exported model computes what the adapted model computes."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings

import pytest
import timm
import torch

from medpeft.cli import main
from medpeft.inference import export_run, load_exported
from medpeft.inference.export import EXPORT_CONFIG, EXPORT_WEIGHTS
from medpeft.methods import METHODS, apply_method, save_adapter
from medpeft.runtime import DataConfig, RunConfig, RunDir, TrainConfig, build_base, resolve_run_config

from ..methods.conftest import TINY, method_family_pairs, perturb

PLAIN = {"fft", "linear"}  # change no architecture: exported plain although not "mergeable"
LABELS = ["normal", "pneumonia"]
# one bottleneck a stage: every module the ResNet methods touch, at a fifth of ResNet-50's build time
BACKBONES = {"vit": TINY["vit"],
             "resnet": dataclasses.replace(TINY["resnet"], timm_kwargs={**TINY["resnet"].timm_kwargs,
                                                                         "layers": [1, 1, 1, 1]})}


def fake_run(path, method: str, family: str):
    """A run directory as training leaves it, with every trainable tensor moved off its init."""
    config, _ = resolve_run_config(RunConfig(data=DataConfig(spec="synthetic-cxr"), backbone=BACKBONES[family],
                                             method=method, train=TrainConfig(seed=3)))
    model, _ = build_base(config, 1)
    method_obj = config.create_method()
    model = apply_method(model, method_obj)
    perturb(model)
    for module in model.modules():  # BatchNorm statistics as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    save_adapter(model, method_obj, path, extra={"backbone": config.to_dict()["backbone"], "num_outputs": 1,
                                                   "task": "binary", "labels": LABELS,
                                                   "thresholds": {"pneumonia": 0.37}})
    RunDir(path).save_config(config.to_dict())
    return model.eval()




@pytest.mark.parametrize("name,family", method_family_pairs())
def test_export_equals_the_adapted_model_and_merged_ones_load_with_timm_alone(tmp_path, name, family):
    with _quiet():  # ResNet methods warn about closed branches on random inits; not this test's business
        adapted = fake_run(tmp_path / "run", name, family)
    result = export_run(tmp_path / "run", tmp_path / "export")
    should_merge = METHODS.get(name).mergeable or name in PLAIN
    assert result.merged == should_merge
    size = BACKBONES[family].img_size
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = adapted(images)
        model, card = load_exported(tmp_path / "export")
        torch.testing.assert_close(model(images), expected, rtol=1e-4, atol=1e-5)
        if should_merge:  # a plain timm model: timm's own loader builds and fills it
            plain = timm.create_model(f"local-dir:{tmp_path / 'export'}", pretrained=True).eval()
            assert type(plain) is type(model)
            torch.testing.assert_close(plain(images), expected, rtol=1e-4, atol=1e-5)
    info = card["medpeft"]
    assert info["merged"] == should_merge and info["method"] == name
    assert (info["task"], info["outputs"], info["labels"], info["columns"]) == ("binary", "sigmoid", LABELS,
                                                                               ["pneumonia"])
    assert info["thresholds"] == {"pneumonia": 0.37} and len(info["mean"]) == len(info["std"]) == 3
    assert card["pretrained_cfg"]["input_size"] == [3, size, size]


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_cli_export_writes_the_two_files(tmp_path, capsys):
    fake_run(tmp_path / "run", "lora", "vit")
    assert main(["export", str(tmp_path / "run")]) == 0
    out = tmp_path / "run" / "export"
    assert {p.name for p in out.iterdir()} == {EXPORT_WEIGHTS, EXPORT_CONFIG}
    card = json.loads((out / EXPORT_CONFIG).read_text())
    assert card["architecture"] == "vit_tiny_patch16_224" and card["model_args"]["patch_size"] == 4
    assert "folded into the base weights" in capsys.readouterr().out


def test_a_non_mergeable_method_says_so(tmp_path):
    fake_run(tmp_path / "run", "adapter", "vit")
    result = export_run(tmp_path / "run")
    assert not result.merged and "cannot be merged" in result.note
    card = json.loads((tmp_path / "run" / "export" / EXPORT_CONFIG).read_text())
    assert not card["medpeft"]["merged"] and "load_exported" in card["medpeft"]["note"]
