"""Every registered method, on every backbone family it fits, through the real ``finetune``.

tests/methods/test_methods_learn_smoke.py trains each method with a hand-written Adam loop;
tests/train/test_optimizer_groups.py builds each ViT method's optimizer without training. This
file joins them: the run is ``medpeft.train.finetune`` itself (the run's own model, optimizer,
schedule, feature cache and step), for 1 epoch of 3 steps on tiny synthetic data, and the real
optimizer it builds is captured by wrapping ``build_optimizer`` where the loop calls it, with a
step pre-hook that looks at the gradients the optimizer is about to apply. For each
(method, family) pair:

- the optimizer's groups hold exactly the trainable tensors, each in one group, no frozen one;
  the groups are those of the rule in test_optimizer_groups.py (timm's): no weight decay on 1-D
  tensors and on the tokens, and for the ViT a layer-decay lr scale per block (the stem
  ``d ** (L + 1)``, block ``i`` ``d ** (L - i)``, everything else 1.0); the ResNet gets no scale;
  and every group's lr is the run's scheduled lr times its scale;
- every trainable tensor had a non-zero gradient at some step and moved. The one legitimate
  exception is the first step, asserted exactly (``FIRST_STEP_SILENT``): a factor multiplied by
  a zero-initialised one (LoRA's A beside B = 0, an adapter's down-projection beside up = 0,
  LoKr's w2 beside w1 = 0, LoHa's w1 pair and w2_a beside w2_b = 0) has a gradient of exactly
  zero until the zero factor has moved, which it does in the first step (its partners are
  random); from the second step on all have gradients, so 3 steps are enough. Only gradients
  can move a 1-D tensor (no weight decay) or a zero one (its decay is zero), so "moved" is not
  weight decay alone for those; the gradient record covers the rest;
- every frozen tensor is bit-identical after the run, and the saved adapter holds the trained
  tensors; the trainable ones are those the method's name filter names.

Also here: ``clip_grad`` bounds the gradient the optimizer applies (with a positive control).
About 0.5 s per pair (20 s for the file with one torch thread on a busy 2-core machine).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from medpeft.methods import METHODS
from medpeft.models import BackboneConfig
from medpeft.train import finetune
from medpeft.train import finetuning as loop_module

from .test_optimizer_groups import WEIGHT_DECAY, expected_decay, expected_scale, groups_by_name
from .tiny import QUIET, TINY_RESNET, TINY_VIT, tiny_run

# tiny.py's ResNet-50 thinned to one bottleneck a stage and 1/8 of the widths (140 k parameters,
# not 23 M): the same timm ResNet class and Bottleneck blocks (conv1-3, bn1-3, downsample) that the
# ResNet methods adapt, at a cost the default run can pay seven times
THIN_RESNET = BackboneConfig(TINY_RESNET.name, img_size=TINY_RESNET.img_size, drop_path=0.0,
                             timm_kwargs={**TINY_RESNET.timm_kwargs, "layers": [1, 1, 1, 1],
                                          "channels": [8, 16, 32, 64], "stem_width": 8})
BACKBONES = {"vit": TINY_VIT, "resnet": THIN_RESNET}
STEPS = 3  # 96 training images at batch 32, 1 epoch
LAYER_DECAY = 0.75  # TrainConfig's default, spelled out: the groups follow it (and WEIGHT_DECAY)
# method -> the tensors whose first-step gradient is exactly zero: each multiplies a factor that
# starts at zero (so that the adapted model starts as the base model); every other method: none
FIRST_STEP_SILENT = {
    "lora": r"\.lora_A_[qv]$",  # beside lora_B_q/v = 0
    **dict.fromkeys(("lora-qkv", "dora", "lora-conv"), r"\.lora_A\.default\.weight$"),  # peft's lora_B = 0
    **dict.fromkeys(("adapter", "adapter-parallel", "adaptformer"), r"_adapter\.down\.(weight|bias)$"),  # up = 0
    "lokr": r"\.lokr_w2_[ab]\.default$",  # beside lokr_w1 = 0
    "loha": r"\.hada_w(1_[ab]|2_a)\.default$",  # (w1_a w1_b) * (w2_a w2_b) with w2_b = 0
}


@dataclass
class Watched:
    """One run's real optimizer and model, the model's tensors before the first step, and what
    the optimizer saw at each step: which tensors had a non-zero gradient, and the total L2
    norm of the gradients it applied (after any clipping)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    before: dict[str, torch.Tensor]
    with_gradient: set[str] = field(default_factory=set)  # a non-zero gradient at some step
    silent: list[set[str]] = field(default_factory=list)  # per step: no gradient or an all-zero one
    grad_norms: list[float] = field(default_factory=list)

    def record_step(self, optimizer, args, kwargs) -> None:
        names = {id(p): n for n, p in self.model.named_parameters()}
        held = [(names[id(p)], p.grad) for g in optimizer.param_groups for p in g["params"]]
        grads = [(n, grad) for n, grad in held if grad is not None]
        self.with_gradient |= {n for n, grad in grads if grad.any()}
        self.silent.append({n for n, grad in held if grad is None or not grad.any()})
        self.grad_norms.append(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(grad.detach().float()) for _, grad in grads])).item())


@pytest.fixture
def watch(monkeypatch) -> list[Watched]:
    """The runs' optimizers, as ``finetune`` builds them (the real ones, observed)."""
    runs: list[Watched] = []
    real = loop_module.build_optimizer

    def recording(model, train, lr):
        optimizer = real(model, train, lr)
        watched = Watched(model, optimizer, {n: p.detach().clone() for n, p in model.named_parameters()})
        optimizer.register_step_pre_hook(watched.record_step)
        runs.append(watched)
        return optimizer

    monkeypatch.setattr(loop_module, "build_optimizer", recording)
    return runs


def method_family_pairs():
    return [pytest.param(name, family, id=f"{name}-{family}")
            for name, cls in METHODS.items() for family in ("vit", "resnet") if family in cls.families]


def test_every_method_of_both_families_is_covered():
    """A method registered for a family this file does not know would escape the matrix."""
    assert {f for _, cls in METHODS.items() for f in cls.families} - {"unet"} == set(BACKBONES)
    pairs = {p.values for p in method_family_pairs()}
    assert {("fft", "vit"), ("fft", "resnet"), ("lora-conv", "resnet"), ("tsa", "resnet"), ("film", "resnet"),
            ("vpt-deep", "vit")} <= pairs


@pytest.mark.parametrize("name,family", method_family_pairs())
def test_finetune_trains_exactly_the_methods_tensors(name, family, watch, tmp_path):
    config = tiny_run(name, backbone=BACKBONES[family], epochs=1, weight_decay=WEIGHT_DECAY, layer_decay=LAYER_DECAY)
    metrics = finetune(config, tmp_path / "run", console=QUIET, progress=False)
    assert metrics["steps"] == STEPS
    [run] = watch
    model, optimizer = run.model, run.optimizer
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    frozen = set(params) - trainable
    assert trainable and bool(frozen) == (name != "fft"), f"{name}: trains {len(trainable)}, freezes {len(frozen)}"
    rule = config.create_method().is_trainable(model)  # the method's own name filter, plus the head
    assert trainable == {n for n in params if rule(n)}

    # (a) the groups: exactly the trainable tensors, each once, with the rule's decay and lr scale
    in_groups = groups_by_name(model, optimizer)  # fails if a tensor is in two groups
    assert set(in_groups) == trainable, (f"{name}: missing from the optimizer {sorted(trainable - set(in_groups))[:5]}, "
                                         f"frozen in it {sorted(set(in_groups) - trainable)[:5]}")
    scheduled = {group["lr"] / group.get("lr_scale", 1.0) for group in optimizer.param_groups}
    assert max(scheduled) == pytest.approx(min(scheduled), rel=1e-9) and min(scheduled) > 0, scheduled
    for pname, group in in_groups.items():
        assert group["weight_decay"] == expected_decay(pname, params[pname]), pname
        scale = expected_scale(pname, len(model.blocks), LAYER_DECAY) if family == "vit" else 1.0  # ResNet: none
        assert group.get("lr_scale", 1.0) == pytest.approx(scale), pname

    # (b) every trainable tensor got a gradient and moved; (c) every frozen tensor is untouched
    assert len(run.grad_norms) == STEPS
    pattern = FIRST_STEP_SILENT.get(name)
    expected_silent = {n for n in trainable if pattern and re.search(pattern, n)}
    assert expected_silent or not pattern, f"{name}: {pattern} names none of its tensors"
    assert run.silent[0] == expected_silent, (f"{name}: first-step zero gradients {sorted(run.silent[0])[:4]}, "
                                              f"expected {sorted(expected_silent)[:4]}")
    assert not run.silent[1], f"{name}: zero gradients in the second step: {sorted(run.silent[1])[:4]}"
    no_gradient = sorted(trainable - run.with_gradient)
    assert not no_gradient, f"{name}: trainable tensors with an all-zero gradient at every step: {no_gradient[:5]}"
    unmoved = sorted(n for n in trainable if torch.equal(params[n], run.before[n]))
    assert not unmoved, f"{name}: trainable tensors that did not move: {unmoved[:5]}"
    changed = sorted(n for n in frozen if not torch.equal(params[n], run.before[n]))
    assert not changed, f"{name}: frozen tensors that changed: {changed[:5]}"

    # the run directory holds what trained (1 epoch: the best epoch is the last)
    saved = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    assert trainable <= set(saved)
    assert all(torch.equal(saved[n], params[n].detach()) for n in trainable)


def test_clip_grad_bounds_the_gradient_the_optimizer_applies(watch, tmp_path):
    """``clip_grad`` c: the total norm of the gradients at every optimizer step is c (they are
    above it before clipping, so clipping brings them to it); the same run without clipping
    applies larger ones (the positive control that makes the bound mean something). The loop
    reports no gradient norm (not in the history nor the log), so there is none to compare."""
    clip = 0.25  # the unclipped norms of this run are 1.7-2.0
    finetune(tiny_run("fft", epochs=1), tmp_path / "free", console=QUIET, progress=False)
    finetune(tiny_run("fft", epochs=1, clip_grad=clip), tmp_path / "clipped", console=QUIET, progress=False)
    free, clipped = watch
    assert len(free.grad_norms) == len(clipped.grad_norms) == STEPS
    assert min(free.grad_norms) > 4 * clip, free.grad_norms
    assert clipped.grad_norms == pytest.approx([clip] * STEPS, rel=1e-4)
