"""VPT: how many prompt tokens each block sees, which prompts, and that pooling never sees them."""
from __future__ import annotations

import math

import pytest
import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_inputs, make_model
from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims

PATCHES = 16  # the tiny ViT: 16 px images, 4 px patches


@pytest.mark.parametrize("name,prompt_weights", [("vpt-shallow", 10 * 768), ("vpt-deep", 12 * 10 * 768)])
def test_vit_base_count(name, prompt_weights):
    """ViT-B/16 with 10 tokens: 7,680 (shallow) and 92,160 (deep) prompt weights."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        method = create_method(name)
        head, expected = dims(model)["head"], FORMULAS[name](model, method.config)
        trainable, _ = count_parameters(apply_method(model, method))
    assert method.config.num_tokens == 10
    assert trainable == expected
    assert trainable - head == prompt_weights


def block_inputs(model, x):
    """The token sequence entering each block, in eval mode (no prompt dropout)."""
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach())) for b in model.blocks]
    with torch.no_grad():
        features = model.eval().forward_features(x)
    for hook in hooks:
        hook.remove()
    return seen, features


@pytest.mark.parametrize("name", ["vpt-shallow", "vpt-deep"])
def test_every_block_sees_num_tokens_more_tokens_and_pooling_sees_none(name):
    base = make_model("vit")
    x = make_inputs("vit")
    with torch.no_grad():
        base_features = base.forward_features(x)  # (B, 1 + N, d)
    model = apply_method(base, create_method(name, {"num_tokens": 5}))
    seen, features = block_inputs(model, x)
    assert [s.shape for s in seen] == [(2, 1 + 5 + PATCHES, 192)] * 2
    assert features.shape == base_features.shape == (2, 1 + PATCHES, 192)  # prompts dropped before norm/pool
    torch.testing.assert_close(seen[0][:, 1:6], model.vpt_prompts.expand(2, -1, -1))  # right after the class token
    torch.testing.assert_close(model.forward_head(features, pre_logits=True),
                               model.fc_norm(features[:, 1:].mean(dim=1)))  # avg over patch tokens only


def test_deep_replaces_the_prompts_at_every_block_and_shallow_lets_them_travel():
    x = make_inputs("vit")
    deep = apply_method(make_model("vit"), create_method("vpt-deep", {"num_tokens": 3}))
    seen, _ = block_inputs(deep, x)
    assert deep.vpt_deep_prompts.shape == (1, 3, 192)  # depth 2: one set after block 0
    torch.testing.assert_close(seen[1][:, 1:4], deep.vpt_deep_prompts[0].expand(2, -1, -1))
    shallow = apply_method(make_model("vit"), create_method("vpt-shallow", {"num_tokens": 3}))
    seen, _ = block_inputs(shallow, x)
    assert shallow.vpt_deep_prompts is None
    assert not torch.allclose(seen[1][:, 1:4], shallow.vpt_prompts.expand(2, -1, -1))  # block 0 transformed them


def test_prompt_init_follows_vpt_and_base_keys_are_unchanged():
    base = make_model("vit")
    keys = set(base.state_dict())
    model = apply_method(base, create_method("vpt-deep"))
    bound = math.sqrt(6.0 / (3 * 4 * 4 + 192))  # 3 channels x 4x4 patch, d = 192
    for prompts in (model.vpt_prompts, model.vpt_deep_prompts):
        assert prompts.abs().max() <= bound and prompts.std() > bound / 3
    assert set(model.state_dict()) == keys | {"vpt_prompts", "vpt_deep_prompts"}


def test_prompts_change_the_output_and_dropout_only_acts_in_training():
    base = make_model("vit")
    x = make_inputs("vit")
    with torch.no_grad():
        expected = base(x)
    model = apply_method(base, create_method("vpt-deep", {"dropout": 0.5})).eval()
    with torch.no_grad():
        assert not torch.allclose(model(x), expected)
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("options,match", [({"num_tokens": 0}, "num_tokens"), ({"dropout": 1.0}, "dropout")])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        create_method("vpt-deep", options)


def test_applying_twice_or_passing_a_mask_is_refused():
    model = apply_method(make_model("vit"), create_method("vpt-shallow"))
    with pytest.raises(ValueError, match="already applied"):
        apply_method(model, create_method("vpt-deep"))
    with pytest.raises(ValueError, match="attention masks"):
        model.forward_features(make_inputs("vit"), is_causal=True)
