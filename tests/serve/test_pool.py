"""Runs over shared bases: one copy of identical frozen weights, exact answers for every method,
per-sample LoRA batches equal to one pass per adapter, and refusals that name the problem."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medpeft.inference import RunPredictor
from medpeft.methods import METHODS, save_adapter
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, RunDir, TrainConfig, build_model, resolve_run_config
from medpeft.serve.pool import AdapterPool, run_names, tensor_bytes

from ..runs import VIT16

TINY_RESNET = BackboneConfig("resnet50", img_size=32, drop_path=0.0,
                             timm_kwargs={"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128],
                                                "stem_width": 16, "zero_init_last": False})


@pytest.fixture(scope="module")
def pool(served_runs):
    return AdapterPool.load(served_runs)


def mixed_batch(pool, images):
    """Image i for run i mod R: every run appears, interleaved."""
    names = list(pool.runs)
    return [(names[i % len(names)], pool.runs[names[i % len(names)]].predictor.prepare(image / 255.0))
            for i, image in enumerate(images)]


def test_runs_with_identical_base_weights_share_one_copy(pool, served_runs):
    memory = pool.memory()
    assert memory["bases"] == 2  # seed 0 (four runs) and seed 1
    bases = {name: run.base for name, run in pool.runs.items()}
    assert len({bases[n] for n in ("pneu-lora", "breast-lora", "breast-linear", "pneu-bitfit")}) == 1
    assert bases["pneu-seed1"] != bases["pneu-lora"]
    lora, probe = pool.runs["pneu-lora"].model, pool.runs["breast-linear"].model
    assert lora.blocks[0].mlp.fc1.weight.data_ptr() == probe.blocks[0].mlp.fc1.weight.data_ptr()
    assert lora.head.weight.data_ptr() != probe.head.weight.data_ptr()  # each run its own head
    one_base = tensor_bytes([lora])
    assert memory["tensor_bytes"] < 2.5 * one_base < memory["full_models_tensor_bytes"]
    full = AdapterPool.load(served_runs, share_base=False).memory()
    assert full["tensor_bytes"] > 4 * one_base and full["bases"] == 5


def test_mixed_batches_answer_as_each_run_alone(pool, served_runs, xray_images):
    items = mixed_batch(pool, xray_images)
    answers = pool.predict(items)
    for (name, image), answer in zip(items, answers):
        alone = RunPredictor.load(served_runs[name]).scores(image[None])[0]
        np.testing.assert_allclose(answer, alone, atol=1e-6, err_msg=name)


def test_lora_and_probes_share_a_forward_pass_the_others_go_per_adapter(pool, served_runs, xray_images):
    batching = {name: run.describe()["batching"] for name, run in pool.runs.items()}
    assert batching == {"pneu-lora": "per-sample", "breast-lora": "per-sample", "breast-linear": "per-sample",
                        "pneu-bitfit": "per-adapter", "pneu-seed1": "per-sample"}
    assert len(pool.trunks) == 2  # one per base
    unmixed = AdapterPool.load(served_runs, mix=False)
    assert not unmixed.trunks and {r.describe()["batching"] for r in unmixed.runs.values()} == {"per-adapter"}
    items = mixed_batch(pool, xray_images)
    np.testing.assert_allclose(np.stack(pool.predict(items)), np.stack(unmixed.predict(items)), atol=1e-6)


def _random_run(path, backbone: BackboneConfig, method: str) -> None:
    """A run directory whose adapter is random (not zero, so every adapter tensor matters), run in
    fp32 on every CPU: under ``auto`` a CPU with fast bf16 serves LoRA's mixed per-sample path
    up to 4e-4 away from the per-adapter path (seen on an AVX512-BF16 CPU; an open issue, "the
    server's answer is not predict's"), which this equality test must not depend on."""
    config, _ = resolve_run_config(RunConfig(data=DataConfig(spec="synthetic-cxr?n=8"), backbone=backbone,
                                             method=method, train=TrainConfig(seed=3, precision="fp32")))
    model, applied, _ = build_model(config, 2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    RunDir(path).save_config(config.to_dict())
    save_adapter(model.eval(), applied, path, extra={"num_outputs": 2, "task": "multilabel", "labels": ["a", "b"],
                                                     "thresholds": {"a": 0.5, "b": 0.5}})


@pytest.mark.slow  # ~20 s per family: every registered method, over a shared base and alone
@pytest.mark.parametrize("family, backbone", [("vit", VIT16), ("resnet", TINY_RESNET)])
def test_every_method_answers_over_a_shared_base_as_over_its_own(family, backbone, tmp_path):
    """The registry matrix: each method's model built on the meta device over the shared base."""
    methods = [name for name, cls in METHODS.items() if family in cls.families]
    for name in methods:
        _random_run(tmp_path / name, backbone, name)
    shared = AdapterPool.load({name: tmp_path / name for name in methods})
    assert shared.memory()["bases"] == 1
    images = torch.randn(3, 3, backbone.img_size, backbone.img_size, generator=torch.Generator().manual_seed(0))
    items = [(name, image) for name in methods for image in images]
    answers = shared.predict(items)
    for name in methods:
        alone = RunPredictor.load(tmp_path / name).scores(images)
        ours = np.stack([a for (n, _), a in zip(items, answers) if n == name])
        np.testing.assert_allclose(ours, alone, atol=1e-5, err_msg=name)


def test_a_run_whose_base_cannot_be_rebuilt_is_refused(served_runs, tmp_path):
    import shutil

    import yaml

    copy = tmp_path / "moved"
    shutil.copytree(served_runs["pneu-lora"], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["train"]["seed"] = 7  # another random init than the adapter was trained on
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="base weights rebuilt from its config differ"):
        AdapterPool.load({"moved": copy})


def test_run_names(tmp_path):
    (tmp_path / "a").mkdir()
    assert run_names([str(tmp_path / "a"), f"b={tmp_path / 'a'}"]) == {"a": tmp_path / "a", "b": tmp_path / "a"}
    with pytest.raises(ValueError, match="two runs are named 'a'"):
        run_names([str(tmp_path / "a"), f"a={tmp_path}"])
    with pytest.raises(ValueError, match="letters, digits"):
        run_names([f"x y={tmp_path}"])
