"""Architecture numbers that the closed-form trainable counts use (shared by the formula files)."""
from __future__ import annotations

from medpeft.models import family_of

NUM_OUTPUTS = 3  # head width of the tiny test models


def dims(model) -> dict:
    """Architecture numbers the formulas use."""
    if family_of(model) == "vit":
        d = model.embed_dim
        return {"d": d, "L": len(model.blocks), "C": NUM_OUTPUTS, "mlp": model.blocks[0].mlp.fc1.out_features,
                "head": d * NUM_OUTPUTS + NUM_OUTPUTS + 2 * d, "tokens": model.patch_embed.num_patches}
    return {"C": NUM_OUTPUTS, "head": model.num_features * NUM_OUTPUTS + NUM_OUTPUTS}


def total_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
