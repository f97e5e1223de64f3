"""Training recipes beyond the default: the step schedule and Adam (MedMNIST v2's ResNet-18
protocol), RandAugment + random erasing, and mixup / cutmix (MAE's fine-tuning recipe)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medpeft.data.transforms import build_transform
from medpeft.runtime import DataConfig, TrainConfig
from medpeft.runtime import loop as runtime_loop
from medpeft.runtime.schedule import lr_at
from medpeft.train import build_optimizer, finetune
from medpeft.train.mixing import mix_batch

from .tiny import QUIET, tiny_run


def test_the_step_schedule_drops_by_gamma_at_each_milestone():
    kwargs = dict(lr=1e-3, min_lr=0.0, warmup_steps=0, total_steps=100, kind="step", milestones=(0.5, 0.75),
                  gamma=0.1)
    assert [lr_at(s, **kwargs) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    assert lr_at(0, **{**kwargs, "warmup_steps": 4}) == pytest.approx(1e-3 / 5)  # warmup first


@pytest.mark.parametrize("values,match", [
    ({"schedule": "linear"}, "schedule must be one of"), ({"milestones": (0.8, 0.5)}, "increasing"),
    ({"milestones": (1.5,)}, "increasing fractions"), ({"gamma": 0.0}, "gamma"), ({"optimizer": "lamb"}, "optimizer"),
    ({"mixup": -1.0}, "mixup cannot be negative"),
])
def test_bad_recipe_options(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**values)


def test_adam_is_torch_adam_with_l2_weight_decay():
    model = torch.nn.Linear(4, 2)
    optimizer = build_optimizer(model, TrainConfig(optimizer="adam", weight_decay=0.0, layer_decay=1.0), lr=1e-3)
    assert type(optimizer) is torch.optim.Adam
    assert {g["weight_decay"] for g in optimizer.param_groups} == {0.0}


def test_a_step_schedule_run_sets_the_lr_of_every_step(tmp_path, monkeypatch):
    seen = []
    real = runtime_loop.set_lr

    def spy(optimizer, value):
        seen.append(value)
        real(optimizer, value)

    monkeypatch.setattr(runtime_loop, "set_lr", spy)
    config = tiny_run("fft", epochs=4, optimizer="adam", lr=1e-3, schedule="step", warmup_epochs=0,
                      weight_decay=0.0, layer_decay=1.0)  # 3 steps per epoch, 12 in all
    finetune(config, tmp_path / "run", console=QUIET, progress=False)
    assert seen == pytest.approx([1e-3] * 6 + [1e-4] * 3 + [1e-5] * 3)


def test_randaug_changes_the_image_reproducibly_and_keeps_the_shape():
    image = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    plain = build_transform(28, (0.5,), (0.25,), "none")(image)
    augment = build_transform(28, (0.5,), (0.25,), "randaug")
    torch.manual_seed(3)
    first = augment(image)
    torch.manual_seed(3)
    assert torch.equal(first, augment(image))  # the epoch loop's reseeding makes it exact
    assert first.shape == plain.shape == (3, 28, 28) and not torch.equal(first, plain)


@pytest.mark.parametrize("task,targets", [
    ("binary", torch.tensor([[0.0], [1.0], [1.0], [0.0]])),
    ("multilabel", torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])),
    ("multiclass", torch.tensor([0, 2, 1, 2])),
])
@pytest.mark.parametrize("mixup,cutmix", [(0.8, 0.0), (0.0, 1.0)])
def test_mixing_mixes_images_and_targets_with_one_weight(task, targets, mixup, cutmix):
    torch.manual_seed(0)
    images = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])  # image i is all i
    outputs = targets.shape[1] if task != "multiclass" else 3
    mixed, soft = mix_batch(images, targets, task=task, num_outputs=outputs, mixup=mixup, cutmix=cutmix)
    hard = torch.nn.functional.one_hot(targets, 3).float() if task == "multiclass" else targets
    assert soft.shape == (4, outputs) and soft.dtype == torch.float32
    torch.manual_seed(0)  # replay the draws: lam, then the shuffle (the mixup/cutmix coin only with both on)
    lam = float(torch.distributions.Beta(mixup or cutmix, mixup or cutmix).sample())
    order = torch.randperm(4)
    if mixup:  # every pixel of image i is lam * i + (1 - lam) * order[i]
        assert torch.allclose(mixed[:, 0, 0, 0], lam * torch.arange(4.0) + (1 - lam) * order.float())
    for i in range(4):  # the targets carry each image's own share of its pixels
        share = (mixed[i] == float(i)).float().mean() if cutmix and order[i] != i else None
        weight = float(share) if share is not None else lam
        if not (cutmix and order[i] == i):
            assert torch.allclose(soft[i], weight * hard[i] + (1 - weight) * hard[order[i]], atol=1e-6)


def test_a_mixed_and_augmented_run_resumes_exactly(tmp_path, monkeypatch):
    config = tiny_run("lora", epochs=3, mixup=0.8, cutmix=1.0, keep_checkpoint=True)
    config = dataclasses.replace(config, data=DataConfig(spec=config.data.spec, augment="randaug"))
    whole = finetune(config, tmp_path / "whole", console=QUIET, progress=False)
    real = runtime_loop.optimizer_step

    def killed(*args, **kwargs):
        real(*args, **kwargs)
        if kwargs["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runtime_loop, "optimizer_step", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, tmp_path / "killed", console=QUIET, progress=False)
    monkeypatch.setattr(runtime_loop, "optimizer_step", real)
    resumed = finetune(config, tmp_path / "killed", resume=True, console=QUIET, progress=False)
    assert resumed["history"] == whole["history"] and resumed["test"] == whole["test"]
    a, b = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("whole", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
