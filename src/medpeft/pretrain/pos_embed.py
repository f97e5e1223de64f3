"""Fixed 2D sine-cosine position embeddings, as MAE uses for its encoder and decoder.

Borrowed from facebookresearch/mae ``util/pos_embed.py`` (itself from MoCo v3), rewritten in
torch for any (rows, cols) grid. Half of the channels encode one grid axis, half the other;
each half is ``[sin(pos * w), cos(pos * w)]`` with ``w = 1 / 10000^(2i/d)``. The class token's
position is all zeros. The channel layout follows MAE (its "h" half encodes the column), so
the embeddings equal MAE's up to float rounding (computed here in float64).
"""
from __future__ import annotations

import torch


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, dim) embedding: dim/2 sines then dim/2 cosines."""
    assert dim % 2 == 0, "sin-cos embedding needs an even width"
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))  # (dim/2,)
    angles = positions.reshape(-1).double()[:, None] * omega[None, :]  # (M, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """(1, [1 +] rows * cols, dim) float32 embedding of a row-major token grid."""
    if dim % 4:
        raise ValueError(f"a 2D sin-cos position embedding needs a width divisible by 4, got {dim}")
    rows, cols = grid
    row = torch.arange(rows, dtype=torch.float64)[:, None].expand(rows, cols)  # (rows, cols)
    col = torch.arange(cols, dtype=torch.float64)[None, :].expand(rows, cols)
    # MAE's meshgrid puts the column coordinate first
    embed = torch.cat([sincos_1d(dim // 2, col), sincos_1d(dim // 2, row)], dim=1)  # (rows*cols, dim)
    if cls_token:
        embed = torch.cat([torch.zeros(1, dim, dtype=embed.dtype), embed], dim=0)
    return embed.float().unsqueeze(0)
