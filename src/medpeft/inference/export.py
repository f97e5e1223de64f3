"""Exporting a finished run as a model for inference: ``medpeft export RUN``.

The export folder holds two files, in the layout timm reads from a local folder
(``timm.create_model("local-dir:<folder>", pretrained=True)``) and Hugging Face Hub uses:

``model.safetensors``
    the model's ``state_dict``.
``config.json``
    timm's keys — ``architecture`` (the timm model name), ``num_classes``, ``model_args`` (the
    ``timm.create_model`` arguments: image and patch size, pooling, depth, ...),
    ``pretrained_cfg`` (input size, mean/std per channel, label names) — plus a ``medpeft`` section
    for whoever serves it: ``format`` (1), ``task`` (binary | multiclass | multilabel),
    ``outputs`` (sigmoid | softmax: how logits become scores), ``labels`` (the dataset's label
    names), ``columns`` (what each output scores), ``thresholds`` (per column, chosen on
    validation; absent for multiclass), ``img_size``, ``mean``, ``std``, ``method``,
    ``method_config``, ``merged``, ``note``, ``check`` (the largest output difference between the
    exported and the adapted model on a probe batch), ``run`` (the source run directory).

A run whose method merges (LoRA, SSF, BitFit, ...; see ``medpeft methods``) is exported merged:
the updates are folded into the base weights, so the folder is a plain timm model that runs at
the base model's speed and loads with timm alone. So are ``fft`` and ``linear``, which change no
architecture. Adapters and prompts cannot be folded in; they are exported with their modules
(``merged: false``) and need :func:`load_exported`, which rebuilds them with medpeft.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file

from ..serialization import atomic_save_tensors, atomic_write_text, dumps_json
from ..data.transforms import per_channel
from ..methods import apply_method, create_method, read_adapter_config
from ..models import BackboneConfig, create_backbone, timm_model_args
from .evaluate import load_run_model, stored_thresholds

EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"
FORMAT = 1
PROBE_BATCH = 4
TOLERANCE = 1e-4  # largest |exported - adapted| output allowed, relative to the outputs' scale


@dataclass
class Export:
    """What :func:`export_run` wrote."""

    path: Path
    merged: bool
    method: str
    max_abs_diff: float
    note: str


def export_run(run_dir, out_dir=None) -> Export:
    """Write the run's model (merged where its method merges) to ``out_dir`` (default
    ``<run>/export``) and check that it computes what the adapted model computes."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "export"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the export is a folder (model.safetensors + config.json): "
                         "give a folder name")
    adapter = read_adapter_config(run_dir)
    model, method, config = load_run_model(run_dir)
    if not config.backbone.is_resolved():  # runs save resolved configs; hand-written ones may not
        config = dataclasses.replace(config, backbone=config.backbone.with_defaults()[0])
    backbone = config.backbone
    probe = torch.randn(PROBE_BATCH, 3, backbone.img_size, backbone.img_size,
                        generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(probe)
    plain = _plain_timm_model(backbone, adapter["num_outputs"])
    if method.mergeable:
        model = method.unload(model)
    merged = type(model) is type(plain) and set(model.state_dict()) == set(plain.state_dict())
    if merged:
        plain.load_state_dict(model.state_dict(), strict=True)
        model = plain
        note = (f"{method.name} folded into the base weights: a plain timm model" if method.mergeable else
                f"{method.name} changes no architecture: a plain timm model")
    else:
        note = (f"{method.name} cannot be merged into the base weights; its modules are in the weights: "
                "load with medpeft.inference.load_exported")
    with torch.no_grad():
        diff = float((model.eval()(probe) - reference).abs().max())
    scale = float(reference.abs().max()) + 1.0
    if not diff <= TOLERANCE * scale:
        raise RuntimeError(f"exported {method.name} model differs from the adapted model by {diff:.3g} "
                           f"(allowed {TOLERANCE * scale:.3g}); not written")
    card = _card(model, adapter, config, method, merged, note, diff, run_dir)
    _write(out, model, card)
    return Export(out, merged, method.name, diff, note)


def _plain_timm_model(backbone: BackboneConfig, num_outputs: int) -> nn.Module:
    return timm.create_model(backbone.timm_name, pretrained=False, **timm_model_args(backbone, num_outputs))


def _card(model: nn.Module, adapter: dict, config, method, merged: bool, note: str, diff: float,
          run_dir: Path) -> dict:
    backbone = config.backbone
    task, labels = adapter["task"], list(adapter.get("labels") or [])
    columns = [labels[1]] if task == "binary" and len(labels) == 2 else labels
    mean, std = per_channel(backbone.mean, "mean"), per_channel(backbone.std, "std")
    thresholds = stored_thresholds(adapter, run_dir)
    args = timm_model_args(backbone, adapter["num_outputs"])
    pretrained_cfg = {"architecture": backbone.timm_name, "input_size": [3, backbone.img_size, backbone.img_size],
                      "mean": mean, "std": std, "crop_pct": 1.0, "interpolation": "bilinear",
                      "num_classes": adapter["num_outputs"],
                      "classifier": model.pretrained_cfg.get("classifier", "head")}
    return {
        "architecture": backbone.timm_name, "num_classes": adapter["num_outputs"],
        "num_features": getattr(model, "num_features", None), "model_args": args,
        "label_names": columns, "pretrained_cfg": pretrained_cfg,
        "medpeft": {"format": FORMAT, "task": task, "outputs": "softmax" if task == "multiclass" else "sigmoid",
                    "labels": labels, "columns": columns,
                    **({"thresholds": thresholds} if thresholds is not None else {}),
                    "img_size": backbone.img_size, "mean": mean, "std": std,
                    "method": method.name, "method_config": method.config.to_dict(), "merged": merged,
                    "note": note, "check": {"probe_images": PROBE_BATCH, "max_abs_diff": diff},
                    "backbone": config.to_dict()["backbone"], "run": str(run_dir)},
    }


def _write(out: Path, model: nn.Module, card: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    weights = out / EXPORT_WEIGHTS
    atomic_save_tensors(weights, state)
    atomic_write_text(out / EXPORT_CONFIG, dumps_json(card, indent=2) + "\n")


def read_export_card(path) -> dict:
    card_path = Path(path) / EXPORT_CONFIG
    if not card_path.is_file():
        raise FileNotFoundError(f"no {EXPORT_CONFIG} in {path} (make one with `medpeft export RUN`)")
    card = json.loads(card_path.read_text())
    if not isinstance(card.get("medpeft"), dict) or card["medpeft"].get("format") != FORMAT:
        raise ValueError(f"{card_path}: not a medpeft export (format {FORMAT})")
    return card


def load_exported(path) -> tuple[nn.Module, dict]:
    """(model in eval mode, its card) from an export folder: timm alone for a merged model,
    timm + the method's modules otherwise."""
    card = read_export_card(path)
    info = card["medpeft"]
    state = load_file(str(Path(path) / EXPORT_WEIGHTS))
    if info["merged"]:
        model = timm.create_model(card["architecture"], pretrained=False, **card["model_args"])
    else:
        backbone = BackboneConfig(**{**info["backbone"], "checkpoint": None, "drop_path": 0.0})
        model = apply_method(create_backbone(backbone, card["num_classes"]),
                             create_method(info["method"], info["method_config"]))
    model.load_state_dict(state, strict=True)
    return model.eval(), card
