"""Frozen-feature caching (runtime/featurecache.py): a cached linear probe or partial-k run
trains what the uncached run trains, batch for batch, and caching applies only where it may."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from medpeft.models import create_backbone
from medpeft.methods import apply_method, create_method
from medpeft.runtime import featurecache
from medpeft.runtime.featurecache import FrozenSuffix, cache_features, plan_cache
from medpeft.train import finetune

from .tiny import QUIET, TINY_RESNET, TINY_VIT, tiny_run

STILL = dataclasses.replace(TINY_VIT, drop_path=0.0)  # no stochastic depth: cached == uncached


@pytest.mark.parametrize("method,options", [("linear", {}), ("partial-k", {"k": 1})])
def test_cached_run_equals_uncached_run(tmp_path, method, options):
    runs = {}
    for mode in ("off", "on"):
        config = dataclasses.replace(tiny_run(method, backbone=STILL, epochs=3, feature_cache=mode),
                                     method_options=options)
        runs[mode] = finetune(config, tmp_path / mode, console=QUIET, progress=False)
    log = (tmp_path / "on" / "log.txt").read_text()
    assert "feature cache: blocks 0-" in log
    off, on = runs["off"], runs["on"]
    assert len(on["history"]) == len(off["history"]) == 3
    for a, b in zip(off["history"], on["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_auroc"] == pytest.approx(a["val_auroc"], abs=1e-6)
    for split in ("val", "test"):
        assert on[split]["auroc"] == pytest.approx(off[split]["auroc"], abs=1e-6)
        assert on[split]["auroc_per_label"] == pytest.approx(off[split]["auroc_per_label"], abs=1e-6)
    assert not (tmp_path / "on" / "feature-cache").exists()


def _model(method: str, backbone=STILL, **options):
    torch.manual_seed(0)
    return apply_method(create_backbone(backbone, 5), create_method(method, options)).eval()


def test_what_is_cached_for_each_method():
    linear = plan_cache(_model("linear"), deterministic_inputs=None)
    assert (linear.start, linear.pooled) == (2, True)
    partial = plan_cache(_model("partial-k", k=1), deterministic_inputs=None)
    assert (partial.start, partial.pooled) == (1, False)
    assert not plan_cache(_model("lora"), deterministic_inputs=None).active  # trains every block
    assert "before the blocks" in plan_cache(_model("vpt-shallow"), deterministic_inputs=None).reason
    assert not plan_cache(_model("linear"), deterministic_inputs="augment=flip").active
    assert not plan_cache(_model("linear"), deterministic_inputs=None, mode="off").active
    with pytest.warns(UserWarning):  # a random ResNet's closed residual branches
        resnet = _model("linear", backbone=dataclasses.replace(TINY_RESNET, timm_kwargs={}))
    assert "ViTs" in plan_cache(resnet, deterministic_inputs=None).reason
    with pytest.raises(ValueError, match="feature_cache=on.*augment=flip"):
        plan_cache(_model("linear"), deterministic_inputs="augment=flip", mode="on")
    dropped = plan_cache(_model("linear", backbone=TINY_VIT), deterministic_inputs=None)  # drop_path 0.1
    assert dropped.active and "eval mode" in dropped.reason


@pytest.mark.parametrize("method,options", [("linear", {}), ("partial-k", {"k": 1})])
def test_suffix_on_cached_features_equals_the_model(tmp_path, monkeypatch, method, options):
    model = _model(method, **options)
    plan = plan_cache(model, deterministic_inputs=None)
    suffix = FrozenSuffix(model, plan.start, plan.pooled)
    images = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    data = torch.utils.data.TensorDataset(images, torch.arange(10))
    in_memory = cache_features(suffix, data, batch_size=4, device="cpu")
    monkeypatch.setattr(featurecache, "MEMORY_BUDGET", 0)  # too large for memory: a memory-mapped file
    spilled = cache_features(suffix, data, batch_size=4, device="cpu", spill_dir=tmp_path, name="train")
    assert (tmp_path / "train.npy").is_file()
    torch.testing.assert_close(spilled.tensors[0], in_memory.tensors[0], rtol=0, atol=0)
    assert torch.equal(in_memory.tensors[1], torch.arange(10))
    with torch.no_grad():
        torch.testing.assert_close(suffix(in_memory.tensors[0]), model(images), rtol=1e-5, atol=1e-6)
