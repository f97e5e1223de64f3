"""Every method learns a little, on every backbone family it fits, in the default run.

The fast counterpart of the real-data runs in test_methods_learn.py (``slow``, so not run by
default): the tiny models of tests/methods/conftest.py (the ResNet has live residual branches),
2 epochs of 3 batches of 8 synthetic images whose class is the bright vertical third of the
image, Adam at lr 1e-3 without weight decay. It checks what an AUROC bar cannot, because the
head always trains and alone clears such a bar:

- each of the method's own tensors (trainable, outside the task head) got a non-zero gradient
  in the last step and moved; with no weight decay only gradients move a tensor. This is what
  fails when an adapter is cut off from the loss, e.g. the ResNet zero-init bug of
  docs/methods.md (closed residual branches gave lora-conv and tsa all-zero gradients);
- every tensor the method injected is one of them (nothing it adds stays frozen);
- the training loss fell, from the first epoch to the second and on the whole set before and
  after training.

About 10 s for all 25 pairs on 2 idle CPU cores, most of it the seven ResNet-50 runs. With
``zero_init_last: true`` in the tiny ResNet (timm's default) lora-conv, tsa, film and ssf fail
here, while the gradient test of test_method_matrix.py still passes.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from medpeft.methods import apply_method, create_method
from medpeft.models import head_names

from .conftest import TINY, make_model, method_family_pairs
from .shapes import NUM_OUTPUTS

EPOCHS, BATCHES, BATCH = 2, 3, 8


def bright_third_images(family: str, n: int = BATCHES * BATCH, seed: int = 0):
    """(n, 3, S, S) noise with the class-``c`` vertical third brightened; labels cycle 0, 1, 2."""
    size = TINY[family].img_size
    labels = torch.arange(n) % NUM_OUTPUTS
    images = 0.5 * torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    third = size // NUM_OUTPUTS
    for i, c in enumerate(labels.tolist()):
        images[i, :, :, c * third:(c + 1) * third] += 1.0
    return images, labels


def whole_set_loss(model: nn.Module, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        return nn.functional.cross_entropy(model(images), labels).item()


@pytest.mark.parametrize("name,family", method_family_pairs())
def test_each_of_the_methods_own_tensors_gets_a_gradient_and_moves_and_the_loss_falls(name, family):
    base = make_model(family)
    base_tensors = {id(p) for p in base.parameters()}
    model = apply_method(base, create_method(name))
    heads = tuple(f"{h}." for h in head_names(model))
    own = {n: p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(heads)}
    injected = [n for n, p in model.named_parameters() if id(p) not in base_tensors]
    assert set(injected) <= set(own), f"{name} injects tensors that stay frozen"
    if name != "linear":  # the linear probe trains the head only
        assert own, f"{name} trains nothing besides the head"
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    images, labels = bright_third_images(family)
    loss_before = whole_set_loss(model, images, labels)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(0)  # dropout
    epoch_losses = []
    for _ in range(EPOCHS):
        model.train()
        total = 0.0
        for batch in range(BATCHES):
            x, y = images[batch * BATCH:(batch + 1) * BATCH], labels[batch * BATCH:(batch + 1) * BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            without_gradient = [n for n, p in own.items() if p.grad is None or not p.grad.any()]
            optimizer.step()
            total += loss.item()
        epoch_losses.append(total / BATCHES)

    assert not without_gradient, f"{name} on {family}: all-zero gradient in the last step: {without_gradient[:5]}"
    unmoved = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, initial[n])]
    assert not unmoved, f"{name} on {family}: trainable tensors that never moved: {unmoved[:5]}"
    assert epoch_losses[-1] < epoch_losses[0], epoch_losses
    loss_after = whole_set_loss(model, images, labels)
    assert loss_after < loss_before, (loss_before, loss_after)
