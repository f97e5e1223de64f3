"""One forward pass for images bound for different adapters of one base: per-sample LoRA.

A LoRA run computes ``W x + (alpha / r) B A x`` in its adapted layers and is the frozen base
everywhere else, so a batch that mixes images for several LoRA runs can share everything but
the low-rank terms (S-LoRA / Punica's idea): the base matmul runs once over the whole batch, and
each adapter adds its ``B A x`` to its own rows only (a segmented gather, one pair of small
matmuls per adapter present), in the same order and precision as the run's own layer, so the
answers are ``medpeft predict``'s under fp32 and bf16 alike. A linear probe adds nothing in the
trunk. After the trunk, each run's own pooling, ``fc_norm`` and head (its :meth:`forward_head`) score its rows.

Which methods can be mixed is the :data:`MIXERS` registry: method name -> a function listing the
low-rank terms of a loaded model by layer name. Other methods (prompts, adapters in the blocks,
BitFit's biases, anything changing non-linear parts) are served one forward pass per adapter.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from ..methods.lora import QVLoRALinear
from ..registry import Registry


class LowRankTerm(NamedTuple):
    """``out[..., lo:hi] += scale * up @ down @ x`` for one adapter in one Linear layer."""

    lo: int
    hi: int
    down: torch.Tensor  # (r, d_in): LoRA's A
    up: torch.Tensor  # (hi - lo, r): LoRA's B
    scale: float  # alpha / r


#: method name -> function(model) -> {Linear layer name: [LowRankTerm, ...]}
MIXERS: Registry[Callable[[nn.Module], dict[str, list[LowRankTerm]]]] = Registry("per-sample method")


@MIXERS.register("lora")
def lora_terms(model: nn.Module) -> dict[str, list[LowRankTerm]]:
    """medpeft's LoRA on the q and v slices of each fused qkv (:class:`QVLoRALinear`)."""
    terms = {}
    for name, layer in model.named_modules():
        if isinstance(layer, QVLoRALinear):
            d = layer.out_features // 3
            terms[name] = [LowRankTerm(0, d, layer.lora_A_q, layer.lora_B_q, layer.scaling),
                           LowRankTerm(2 * d, 3 * d, layer.lora_A_v, layer.lora_B_v, layer.scaling)]
    return terms


@MIXERS.register("linear")
def probe_terms(model: nn.Module) -> dict[str, list[LowRankTerm]]:
    """A linear probe leaves the trunk as it is: only its head differs."""
    return {}


class Routing:
    """Which rows of the current batch belong to which adapter slot (shared by every layer)."""

    def __init__(self):
        self.rows: list[tuple[int, torch.Tensor]] = []

    def route(self, slots: torch.Tensor) -> None:
        self.rows = [(int(s), (slots == s).nonzero()[:, 0]) for s in slots.unique()]


class MultiAdapterLinear(nn.Module):
    """A frozen Linear plus, for each adapter slot, its low-rank terms, applied to that slot's rows.

    The arithmetic is :func:`medpeft.methods._lora_function.qv_lora`'s, step for step, so each row
    gets the bits the run's own model gives it (``medpeft predict``) in every precision: under
    autocast every tensor is cast to its dtype first and the GEMMs run in it; ``out = bias + x W^T``
    for the whole batch, ``u = x [A_1; A_2]^T`` per slot, and each term added in place with
    ``addmm_(u_i, B_i^T, alpha=scale)`` (one rounding, as the run's layer does). Adding the terms
    as separate bf16 products and sums instead moved answers by up to 1.3e-3 under bf16.
    """

    def __init__(self, base: nn.Linear, routing: Routing, slots: list[list[LowRankTerm]]):
        super().__init__()
        self.weight, self.bias = base.weight, base.bias  # shared with the base, not copied
        self.routing, self.slots = routing, slots

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, N, d_in)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            with torch.autocast(device, enabled=False):
                return self._forward(x.to(dtype), dtype)
        return self._forward(x, None)

    def _forward(self, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        cast = (lambda t: t if t is None or dtype is None else t.to(dtype))
        weight, bias = cast(self.weight), cast(self.bias)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()  # (B*N, d_in)
        out = torch.addmm(bias, x2, weight.t()) if bias is not None else x2.mm(weight.t())  # once for all
        out = out.view(*shape[:-1], out.shape[-1])  # (B, N, d_out)
        for slot, rows in self.routing.rows:
            terms = self.slots[slot]
            if not terms:
                continue
            h = x[rows].reshape(-1, shape[-1])  # (b*N, d_in): this adapter's images
            u = h.mm(torch.cat([cast(t.down) for t in terms]).t())  # (b*N, sum of ranks)
            part = out[rows].reshape(-1, out.shape[-1])  # a copy: this adapter's rows
            start = 0
            for t in terms:
                rank = t.down.shape[0]
                part[:, t.lo:t.hi].addmm_(u[:, start:start + rank], cast(t.up).t(), alpha=t.scale)
                start += rank
            out[rows] = part.view(len(rows), *shape[1:-1], out.shape[-1])
        return out


class MixedTrunk:
    """The group's base ViT (shared tensors) with every adapted Linear a :class:`MultiAdapterLinear`.

    ``trunk`` is the base model itself, built by the caller with the group's tensors; ``runs`` are
    (name, method, loaded model) of the runs it serves (slot i = runs[i]), whose low-rank terms
    are read by reference.
    """

    def __init__(self, trunk: nn.Module, runs: list[tuple[str, str, nn.Module]]):
        self.trunk, self.routing = trunk.eval(), Routing()
        self.slot = {name: i for i, (name, _, _) in enumerate(runs)}
        per_slot = [MIXERS.get(method)(model) for _, method, model in runs]
        for layer in sorted(set().union(*per_slot)):
            parent, _, attr = layer.rpartition(".")
            owner = trunk.get_submodule(parent) if parent else trunk
            base = getattr(owner, attr)
            assert isinstance(base, nn.Linear), f"{layer} is not a Linear in the base"
            setattr(owner, attr, MultiAdapterLinear(base, self.routing, [terms.get(layer, []) for terms in per_slot]))

    @torch.no_grad()
    def features(self, images: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """The token features (B, N, d) of ``images``, row i computed with adapter ``slots[i]``."""
        self.routing.route(slots)
        try:
            return self.trunk.forward_features(images)
        finally:
            self.routing.rows = []
