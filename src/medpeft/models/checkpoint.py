"""Loading published checkpoint formats into timm backbones, safely.

Formats:
- MAE / MRM ``.pth``: ``{"model": state_dict, ...}`` of the whole autoencoder; the decoder
  (``decoder_*``) and ``mask_token`` are dropped, as MAE's ``main_finetune.py`` does.
- timm ``.safetensors`` / ``.pth``: a plain state dict.
- Original DINOv2 state dicts (``dinov2_vit*14_pretrain.pth``): converted by timm's own
  ``checkpoint_filter_fn`` (mask token, register tokens, SwiGLU names).

For ViTs, timm's ``checkpoint_filter_fn`` also resamples ``pos_embed`` to the new token grid
and the patch-embedding kernel to a new patch size, so a 224-px checkpoint fine-tunes at 64 px.
A classifier head whose shape differs from the task's is dropped (MAE's rule), and a classifier
the checkpoint does not provide starts near zero (weight ~ truncated normal, std 2e-5; bias 0),
as MAE's ``main_finetune.py`` re-initialises it: timm's own init (std 0.02) gives the head a
random direction of its own over pretrained features, strong enough that a short run at a
PEFT learning rate cannot turn it round (measured in docs/methods.md). ``norm.*`` of
a checkpoint lands nowhere when the model pools with ``fc_norm`` (MAE's global-pool
fine-tuning, which re-initialises ``fc_norm``); it is reported as unused.

Files are read with ``torch.load(weights_only=True)`` or safetensors: never unpickled.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file
from timm.models.vision_transformer import checkpoint_filter_fn

from .backbones import family_of, head_names
from .cache import resolve_checkpoint

WRAPPER_KEYS = ("model", "state_dict", "teacher", "model_ema")
STRIP_PREFIXES = ("module.", "backbone.", "encoder.")


@dataclass
class LoadReport:
    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model tensors the checkpoint lacked
    unused: list[str] = field(default_factory=list)  # checkpoint tensors the model has no place for
    dropped: list[str] = field(default_factory=list)  # deliberately discarded (decoder, old head)

    @property
    def missing_encoder(self) -> list[str]:
        """Missing tensors other than the task head, which is always new."""
        return [k for k in self.missing if not k.startswith(self._head_prefixes)]

    _head_prefixes: tuple[str, ...] = ()

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        for title, keys in (("new (not in checkpoint)", self.missing), ("unused", self.unused),
                            ("dropped", self.dropped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        return "\n".join(lines)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from ``{"model": ...}``-style containers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(f"{path}: cannot be read as a weights-only checkpoint ({err}). medpeft "
                             "never unpickles arbitrary objects; re-save the weights as a plain "
                             "state dict or as .safetensors") from None
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors (optionally under 'model')")
    for prefix in STRIP_PREFIXES:
        state = _strip(state, prefix)
    return state


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` when every key has it (``module.`` of DataParallel), or, for an encoder
    wrapper (``backbone.``, ``encoder.``), when most keys have it: the others (a DINO teacher's
    projection ``head.*`` beside its ``backbone.*``) keep their names and are then dropped or
    reported as unused by :func:`load_pretrained`."""
    inside = [k for k in state if k.startswith(prefix)]
    if not inside or (len(inside) < len(state) and (prefix == "module." or 2 * len(inside) <= len(state))):
        return state
    stripped = {k[len(prefix):]: state[k] for k in inside}
    return {**{k: v for k, v in state.items() if not k.startswith(prefix) and k not in stripped}, **stripped}


@torch.no_grad()
def fresh_head(classifier: nn.Linear) -> None:
    """MAE's init of a new classifier over pretrained features: near-zero weight, zero bias."""
    nn.init.trunc_normal_(classifier.weight, std=2e-5)
    if classifier.bias is not None:
        nn.init.zeros_(classifier.bias)


def load_pretrained(model: nn.Module, reference: str | Path) -> LoadReport:
    """Load a checkpoint (file path or cached name) into ``model`` in place; report what moved."""
    path = resolve_checkpoint(reference)
    state = read_state_dict(path)
    report = LoadReport(path=path)
    if any(k.startswith("decoder_") for k in state):  # MAE/MRM autoencoder layout
        report.dropped += [k for k in state if k.startswith("decoder_") or k == "mask_token"]
        state = {k: v for k, v in state.items() if k not in set(report.dropped)}
    if family_of(model) == "vit":
        state = checkpoint_filter_fn(state, model)
    own = model.state_dict()
    heads = tuple(f"{name}." for name in head_names(model))
    report._head_prefixes = heads
    for key in [k for k in state if k.startswith(heads)]:
        if key not in own or own[key].shape != state[key].shape:
            report.dropped.append(key)
            del state[key]
    mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                  if k in own and own[k].shape != v.shape]
    if mismatched:
        key, theirs, ours = mismatched[0]
        raise ValueError(f"{path} was made for a different architecture: {key} has shape {theirs} "
                         f"in the checkpoint but {ours} in this model ({len(mismatched)} such tensors); "
                         "check --backbone / --patch-size / timm_kwargs")
    result = model.load_state_dict(state, strict=False)
    classifier = model.get_classifier()
    if isinstance(classifier, nn.Linear) and not any(k.startswith(heads[0]) for k in state):  # heads[0]: the classifier
        fresh_head(classifier)
    report.missing = list(result.missing_keys)
    report.unused = list(result.unexpected_keys)
    report.loaded = [k for k in state if k not in set(report.unused)]
    encoder = [k for k in own if not k.startswith(heads)]
    if len(report.missing_encoder) > len(encoder) // 2:
        raise ValueError(f"{path} holds almost no weights for this backbone ({len(report.loaded)} of "
                         f"{len(own)} tensors matched); is it a checkpoint of a different model?\n"
                         + report.summary())
    return report
