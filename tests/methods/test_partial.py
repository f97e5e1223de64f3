"""Partial-k: exactly the last k blocks train; k is checked against the model's depth."""
from __future__ import annotations

import pytest
import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_model
from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


@pytest.mark.parametrize("k,block_weights", [(1, 7_087_872), (12, 12 * 7_087_872)])
def test_vit_base_count(k, block_weights):
    """ViT-B/16 block: 4d^2 + 2d*mlp + 9d + mlp = 7,087,872 weights."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        method = create_method("partial-k", {"k": k})
        head, expected = dims(model)["head"], FORMULAS["partial-k"](model, method.config)
        trainable, _ = count_parameters(apply_method(model, method))
    assert trainable == expected
    assert trainable - head == block_weights


def test_trains_the_last_k_blocks_only():
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4,
                                                            timm_kwargs={"depth": 4}), NUM_OUTPUTS),
                             create_method("partial-k", {"k": 2}))
    blocks = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad and n.startswith("blocks.")}
    assert blocks == {"2", "3"}
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert not model.cls_token.requires_grad and not model.patch_embed.proj.weight.requires_grad


def test_k_larger_than_depth_is_a_clear_error():
    with pytest.raises(ValueError, match="k=3 but the model has only 2 blocks; choose k between 1 and 2"):
        apply_method(make_model("vit"), create_method("partial-k", {"k": 3}))


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="k >= 1|k: expected a whole number, got 1.5"):
        create_method("partial-k", {"k": k})
