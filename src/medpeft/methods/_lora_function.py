"""The forward and backward pass of LoRA on q and v (:mod:`medpeft.methods.lora`), written out.

What it computes is exactly ``qkv(x) + [s·B_q A_q drop(x); 0; s·B_v A_v drop(x)]``, the module's
reference formula (kept in :meth:`QVLoRALinear.reference_forward`, which the tests compare this
with). Why it is written by hand instead of left to autograd: on a CPU a LoRA layer's cost is
not its FLOPs (a rank-8 update is ~3% of the qkv GEMM) but the passes over (tokens x width)
tensors around them. Profiled on ViT-Tiny at 28 px (batch 128, 6,400 tokens of width 192),
autograd's version spent 2.9x the frozen qkv layer's own time on LoRA, this one about 0.6x:

- **one rank-2r GEMM** for both low-rank inputs, ``u = drop(x) @ [A_q; A_v]^T``, and the two
  updates added **in place** into the q and v columns of the qkv output (``addmm_``), instead of
  two separate branches, a chunk and a ``torch.cat`` that copies the whole (tokens, 3d) output;
- **the backward written out**: one GEMM each for the input gradient of the frozen weight, the
  low-rank input gradients (also rank 2r) and the A and B gradients, no saved (tokens, 3d)
  intermediates, and no weight gradient for the frozen qkv weight;
- **dropout by sampled positions on the CPU**: ``F.dropout`` draws one Bernoulli number per
  element, which on this CPU took as long as the qkv GEMM itself (13 ms of a 17 ms GEMM). The
  dropped positions of an i.i.d. Bernoulli(p) mask are a renewal process whose gaps are
  geometric, so they are drawn directly (about ``p·n`` uniforms, inverse-CDF), which gives the
  same distribution at a tenth of the cost. On other devices the usual Bernoulli mask is used.

The random stream therefore differs from ``F.dropout``'s (another mask for the same seed), and
the backward sums in another order: a LoRA run is reproducible from its seed, but not bit for
bit the run made before this file existed (gradients agree to ~5e-7 relative).
"""
from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable


def dropped_positions(numel: int, p: float, device: torch.device) -> torch.Tensor:
    """Sorted flat indices of the elements an i.i.d. dropout of rate ``p`` drops (int64).

    The gaps between dropped positions of a Bernoulli(p) sequence are geometric(p):
    ``floor(log(u) / log(1 - p)) + 1`` for u uniform on (0, 1]. About ``p·numel`` of them cover
    the tensor; a few standard deviations more are drawn, and more again in the rare case that
    they fall short.
    """
    expected = numel * p
    count = int(expected + 6.0 * math.sqrt(expected * (1.0 - p)) + 16)
    log_keep = math.log1p(-p)
    ends = torch.empty(0, dtype=torch.float64, device=device)
    last = -1.0
    while last < numel - 1:
        u = 1.0 - torch.rand(count, dtype=torch.float64, device=device)  # (0, 1]
        gaps = torch.floor(torch.log(u) / log_keep) + 1.0  # geometric(p), >= 1
        chunk = gaps.cumsum_(0).add_(last)
        ends = torch.cat([ends, chunk]) if len(ends) else chunk
        last = float(chunk[-1])
    stop = int(torch.searchsorted(ends, float(numel)))
    return ends[:stop].long()


def _dropped(x: torch.Tensor, drop: torch.Tensor, keep: float) -> torch.Tensor:
    """A copy of ``x`` (contiguous) with the dropped elements zeroed and the rest scaled by 1/keep."""
    if drop.dtype == torch.int64:  # flat positions (CPU)
        h = x.mul(1.0 / keep)
        h.view(-1).index_fill_(0, drop, 0.0)
        return h
    return x * drop.view_as(x)  # a mask already scaled by 1/keep


def sample_dropout(x: torch.Tensor, p: float):
    """What :class:`QVLoRAFunction` needs to apply dropout of rate ``p`` to ``x``, or None."""
    if p <= 0.0:
        return None
    if x.device.type == "cpu":
        return dropped_positions(x.numel(), p, x.device)
    return torch.empty_like(x).bernoulli_(1.0 - p).div_(1.0 - p)


class QVLoRAFunction(torch.autograd.Function):
    """``x W^T + b`` plus ``s·(drop(x) A_q^T) B_q^T`` on the q columns and the same on v."""

    @staticmethod
    def forward(ctx, x, weight, bias, a_q, b_q, a_v, b_v, scaling: float, drop, keep: float):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()  # (M, d_in)
        out = torch.addmm(bias, x2, weight.t()) if bias is not None else x2.mm(weight.t())  # (M, 3d)
        h = x2 if drop is None else _dropped(x2, drop, keep)  # dropout on the LoRA input
        a = torch.cat([a_q, a_v])  # (2r, d_in)
        u = h.mm(a.t())  # (M, 2r)
        r, d = a_q.shape[0], b_q.shape[0]
        out[:, :d].addmm_(u[:, :r], b_q.t(), alpha=scaling)  # q columns
        out[:, 2 * d:].addmm_(u[:, r:], b_v.t(), alpha=scaling)  # v columns
        ctx.save_for_backward(x2 if ctx.needs_input_grad[1] else None, weight, h, u, a, b_q, b_v,
                              drop if torch.is_tensor(drop) else None)
        ctx.scaling, ctx.keep, ctx.shape = scaling, keep, shape
        return out.view(*shape[:-1], out.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x2, weight, h, u, a, b_q, b_v, drop = ctx.saved_tensors
        s, r, d = ctx.scaling, a.shape[0] // 2, b_q.shape[0]
        g = grad.reshape(-1, grad.shape[-1])  # (M, 3d)
        g_q, g_v = g[:, :d], g[:, 2 * d:]
        grad_u = torch.cat([g_q.mm(b_q), g_v.mm(b_v)], dim=1).mul_(s)  # (M, 2r)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = g.mm(weight)  # (M, d_in) through the frozen weight
            grad_h = grad_u.mm(a)  # (M, d_in) through the LoRA branch, then its dropout
            if drop is None:
                grad_x.add_(grad_h)
            elif drop.dtype == torch.int64:
                grad_h.view(-1).index_fill_(0, drop, 0.0)
                grad_x.add_(grad_h, alpha=1.0 / ctx.keep)
            else:
                grad_x.addcmul_(grad_h, drop.view_as(grad_h))
            grad_x = grad_x.view(ctx.shape)
        if ctx.needs_input_grad[1]:
            grad_w = g.t().mm(x2)
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        grad_a = grad_u.t().mm(h)  # (2r, d_in)
        grad_b_q = g_q.t().mm(u[:, :r]).mul_(s)  # (d, r)
        grad_b_v = g_v.t().mm(u[:, r:]).mul_(s)
        return grad_x, grad_w, grad_b, grad_a[:r], grad_b_q, grad_a[r:], grad_b_v, None, None, None


def qv_lora(x, weight, bias, a_q, b_q, a_v, b_v, scaling: float, p: float) -> torch.Tensor:
    """The adapted qkv projection of ``x`` (..., d_in) -> (..., 3d), with dropout ``p`` on the
    LoRA input (0 in evaluation). Under autocast everything is cast to its dtype first, as
    autocast would cast the GEMMs."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        cast = [t.to(dtype) if t is not None else None for t in (x, weight, bias, a_q, b_q, a_v, b_v)]
        with torch.autocast(device, enabled=False):
            return qv_lora(*cast, scaling, p)
    drop = sample_dropout(x, p)
    return QVLoRAFunction.apply(x, weight, bias, a_q, b_q, a_v, b_v, scaling, drop, 1.0 - p)
