"""The reconstruction figure: what the autoencoder fills in where it saw nothing.

One row per validation image: original | masked (hidden patches grey) | reconstruction |
reconstruction with the visible patches pasted back. With the normalised-pixel loss the
decoder predicts each patch up to its mean and scale; like MAE's visualisation notebook, the
figure restores them from the original patch, so brightness of hidden patches is not the
model's. Drawn with matplotlib's Agg canvas (no display needed).
"""
from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..data.transforms import per_channel
from .mae import MaskedAutoencoderViT

COLUMNS = ("original", "masked", "reconstruction", "reconstruction + visible")


@torch.no_grad()
def reconstruct(model: MaskedAutoencoderViT, images: torch.Tensor, seed: int = 0) -> dict:
    """Normalised images (B, C, H, W) through the MAE with fixed masks (seeded).

    Returns ``recon`` (B, C, H, W) in the input's normalisation, ``pasted`` (visible patches
    from the original, hidden ones from ``recon``), ``hidden`` (B, H, W) bool and ``loss`` (B,).
    """
    model.eval()
    out = model(images, generator=torch.Generator().manual_seed(seed))
    pred = out.pred.float()
    target = model.patchify(images)
    per_patch = ((pred - model.target(images)) ** 2).mean(dim=-1)  # (B, L)
    loss = (per_patch * out.mask).sum(1) / out.mask.sum(1)
    if model.norm_pix_loss:  # back to pixel space with the original patch statistics
        pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
    hidden = model.unpatchify(out.mask.unsqueeze(-1).expand_as(pred))  # (B, C, H, W), 1 = hidden
    recon = model.unpatchify(pred)
    return {"recon": recon, "pasted": images * (1 - hidden) + recon * hidden,
            "hidden": hidden[:, 0].bool(), "loss": loss}


def _to_display(image: torch.Tensor, mean, std, grey: bool) -> torch.Tensor:
    """Normalised (C, H, W) -> (H, W) grey (channel mean) or (H, W, 3) colour, in [0, 1]."""
    mean = torch.tensor(per_channel(mean, "mean")).view(-1, 1, 1)
    std = torch.tensor(per_channel(std, "std")).view(-1, 1, 1)
    image = (image.detach().cpu().float() * std + mean).clamp(0, 1)
    return image.mean(dim=0) if grey else image.permute(1, 2, 0)


def _is_grey(image: torch.Tensor) -> bool:
    """Grey inputs are one channel repeated; their reconstructions are shown grey too."""
    return bool(torch.equal(image[0], image[1]) and torch.equal(image[0], image[2]))


def save_reconstruction_figure(model: MaskedAutoencoderViT, images: torch.Tensor, path: Path, *,
                               mean, std, title: str = "", seed: int = 0) -> Path:
    result = reconstruct(model, images, seed)
    rows = len(images)
    figure = Figure(figsize=(1.7 * len(COLUMNS), 1.7 * rows + 0.5), layout="constrained")
    axes = figure.subplots(rows, len(COLUMNS), squeeze=False)
    for row in range(rows):
        grey = _is_grey(images[row])
        original = _to_display(images[row], mean, std, grey)
        masked = original.clone()
        masked[result["hidden"][row].cpu()] = 0.5  # hidden patches in mid grey
        shown = (original, masked, _to_display(result["recon"][row], mean, std, grey),
                 _to_display(result["pasted"][row], mean, std, grey))
        for col, picture in enumerate(shown):
            axis = axes[row, col]
            axis.imshow(picture.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(COLUMNS[col], fontsize=8)
        axes[row, 2].set_xlabel(f"masked-patch loss {result['loss'][row]:.3f}", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
