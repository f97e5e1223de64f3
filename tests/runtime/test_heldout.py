"""The shared held-out loss (runtime/loop.py ``heldout_loss``) against a hand computation."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from medpeft.runtime import heldout_loss

SEED = 77


def noisy_loss(model):
    """Mean squared distance to noise from the generator, plus a draw from the global RNG."""
    def loss(batch, generator):
        (x,) = batch
        noise = torch.randn((len(x), 2), generator=generator)
        return ((model(x) - noise) ** 2).mean() + torch.rand(()), len(x)
    return loss


def test_it_equals_the_weighted_mean_over_fixed_batches():
    torch.manual_seed(0)
    model, data = nn.Linear(3, 2), TensorDataset(torch.randn(7, 3))
    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)  # what the global RNG is seeded with inside the fork
    torch.empty((), dtype=torch.int64).random_()  # the DataLoader's base seed, drawn when it starts
    expected, rows = 0.0, data.tensors[0]
    with torch.no_grad():
        for start in range(0, 7, 3):  # batches 3, 3, 1, in order
            x = rows[start:start + 3]
            noise = torch.randn((len(x), 2), generator=generator)
            expected += (((model(x) - noise) ** 2).mean() + torch.rand(())).item() * len(x)
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    model.train()
    got = heldout_loss(model, noisy_loss(model), data, 3, SEED)
    assert got == expected / 7  # bit-identical, not approximately
    assert torch.equal(torch.random.get_rng_state(), state)  # training's random stream is untouched
    assert model.training  # left in the mode it was in
    assert heldout_loss(model, noisy_loss(model), data, 3, SEED) == got  # the same every epoch


def test_eval_mode_while_scoring_and_none_for_no_images():
    model, modes = nn.Linear(3, 2), []

    def loss(batch, generator):
        modes.append(model.training)
        return model(batch[0]).sum(), len(batch[0])

    model.eval()
    heldout_loss(model, loss, TensorDataset(torch.randn(4, 3)), 2, SEED)
    assert modes == [False, False] and not model.training
    assert heldout_loss(model, loss, TensorDataset(torch.randn(0, 3)), 2, SEED) is None
