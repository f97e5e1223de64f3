"""``medpeft diffusion methods``: the diffusion methods' table, with their trainable parameters
counted on a real UNet. Apart from ``methods.py`` because it builds UNets: the UNet's config
imports the registry to validate method names, so the registry must not import the UNet."""
from __future__ import annotations

from ..table import Table
from .config import UNetConfig
from .methods import DIFFUSION_METHODS, apply_method
from .unet import build_unet


def methods_table(unet_config=None, img_size: int = 28):
    """Every diffusion method with its trainable parameters on a UNet of ``unet_config``."""
    unet_config = unet_config or UNetConfig()
    table = Table(f"Diffusion adaptation methods (UNet {list(unet_config.channels)} ch, {img_size} px)",
                  ["Method", "What trains", "Trainable", "Share", "Default lr", "Paper"])
    for name, cls in DIFFUSION_METHODS.items():
        unet = apply_method(build_unet(unet_config, img_size), cls())
        trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
        total = sum(p.numel() for p in unet.parameters())
        table.add_row(name, cls.summary, f"{trainable:,}", f"{100 * trainable / total:.3g}%", f"{cls.default_lr:g}",
                      cls.paper)
    return table
