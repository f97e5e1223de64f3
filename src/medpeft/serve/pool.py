"""Many runs in one process, over as few copies of the frozen backbone as their weights allow.

A PEFT run's files hold only what training changed (adapter, head, BatchNorm statistics); the
rest is its base, rebuilt from its config (backbone, checkpoint, seed). Two runs can share a base
only if those weights are identical, so runs are grouped by content: each distinct base recipe
(backbone config and seed) is built once, its tensors without the head are hashed, and runs
whose bases hash alike form one group holding one copy. Each run's model is then built on the
meta device (no memory), gets its method injected, and takes its tensors by reference
(``load_state_dict(assign=True)``): the group's for the frozen base, its own file's for the
rest. The run's ``base_fingerprint`` (adapter_config.json: a hash of the frozen tensors when it
was trained) is checked on the assembled model, so a model that does not compute what training
computed is refused, as :func:`medpeft.methods.load_adapter` refuses it.

Per request batch, runs whose method is in :data:`medpeft.serve.mixed.MIXERS` (LoRA, linear
probe) share one forward pass per base with per-sample adapters (:class:`MixedTrunk`); the
others run one pass per adapter. ``share_base=False`` builds a full model per run instead
(:meth:`RunPredictor.load`), for comparison.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..serialization import to_dict
from ..inference import RunOutputs, RunPredictor, load_run_model, run_thresholds
from ..methods import apply_method, count_parameters, create_method, read_adapter_config, read_adapter_weights
from ..methods._base import base_fingerprint
from ..models import create_backbone, family_of
from ..models.backbones import head_names
from ..runtime import RunConfig, RunDir, build_base, probabilities, resolve_device
from .inputs import training_reference
from .mixed import MIXERS, MixedTrunk

PEFT_BASE_LAYER = ".base_layer."  # HF peft renames a wrapped module's own tensors (methods/_peft.py)


@dataclass
class ServedRun:
    name: str  # the name requests use: /v1/models/<name>/predict
    path: Path  # the run directory
    method: str
    predictor: RunPredictor  # its model (sharing the base), transform, outputs
    base: str  # sha256 of its frozen base weights (without the head): runs with the same share them
    trainable_params: int  # what the run adds to its base (adapter + head)
    total_params: int
    trunk: str | None = None  # key of the shared forward pass (MixedTrunk) it is scored in, if any
    reference: dict | None = None  # its training images' statistics (serve/inputs.py), if readable here

    @property
    def model(self) -> nn.Module:
        return self.predictor.model

    def describe(self) -> dict:
        backbone = self.predictor.config.backbone
        return {"name": self.name, **self.predictor.outputs.describe(), "method": self.method,
                "backbone": {"name": backbone.name, "img_size": backbone.img_size, "patch_size": backbone.patch_size,
                             "checkpoint": backbone.checkpoint, "family": family_of(self.model)},
                "base": self.base[:12], "trainable_params": self.trainable_params, "total_params": self.total_params,
                "batching": "per-sample" if self.trunk else "per-adapter", "card": self.card()}

    def card(self) -> dict:
        """What the run is: task, labels, its test AUROC with the 95% CI, its training data."""
        try:
            metrics = json.loads((self.path / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        test = metrics.get("test") or {}
        data = self.predictor.config.data
        return {"task": self.predictor.outputs.task, "labels": list(self.predictor.outputs.columns),
                "test": {"auroc": test.get("auroc"), "auroc_ci95": test.get("auroc_ci95"), "n": test.get("n")},
                "training_data": {"spec": data.spec, "fraction": data.fraction, "images": metrics.get("train_size")},
                "input_reference": self.reference}


def run_names(runs: list[str]) -> dict[str, Path]:
    """``["runs/a", "b=runs/x"]`` -> {"a": runs/a, "b": runs/x}: a run is named by its folder or ``name=``."""
    named: dict[str, Path] = {}
    for item in runs:
        name, sep, path = item.partition("=")
        if not sep or os.path.exists(item):
            name, path = Path(item).resolve().name, item
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"model name {name!r} (from {item!r}) may hold letters, digits, '-', '_' and '.' only; "
                             "name it with NAME=RUN_DIR")
        if name in named:
            raise ValueError(f"two runs are named {name!r} ({named[name]} and {path}); name them with NAME=RUN_DIR")
        named[name] = Path(path)
    return named


class AdapterPool:
    """The runs a server answers for, by name, and the batched scoring of mixed requests."""

    def __init__(self, runs: dict[str, ServedRun], trunks: dict[str, MixedTrunk], device: torch.device):
        self.runs, self.trunks, self.device = runs, trunks, device

    @classmethod
    def load(cls, runs: dict[str, str | os.PathLike], *, share_base: bool = True, mix: bool = True,
             device: str = "auto", check_inputs: bool = True) -> "AdapterPool":
        device = resolve_device(device)
        bases = _Bases(device)
        served = {name: (_load_shared(name, Path(path), bases, device) if share_base
                         else _load_full(name, Path(path), device)) for name, path in runs.items()}
        if check_inputs:  # each distinct training set measured once
            references: dict[str, dict | None] = {}
            for run in served.values():
                data = run.predictor.config.data
                key = json.dumps([data.spec, data.data_root])
                if key not in references:
                    references[key] = training_reference(run.predictor.config)
                run.reference = references[key]
        trunks = _mixed_trunks(served, bases) if share_base and mix else {}
        bases.forget_recipes()
        return cls(served, trunks, device)

    def get(self, name: str) -> ServedRun:
        if name not in self.runs:
            raise KeyError(name)
        return self.runs[name]

    @torch.no_grad()
    def predict(self, items: list[tuple[str, torch.Tensor]]) -> list[np.ndarray]:
        """Probabilities (K,) for each (run name, prepared image (3, S, S)), in order: one forward
        pass per base for the mixed runs, one per run for the others."""
        results: list[np.ndarray | None] = [None] * len(items)
        passes: dict[str, list[int]] = defaultdict(list)
        for i, (name, _) in enumerate(items):
            run = self.runs[name]
            passes[("trunk", run.trunk) if run.trunk else ("run", name)].append(i)
        for (kind, key), members in passes.items():
            images = torch.stack([items[i][1] for i in members])
            if kind == "trunk":
                scores = self._mixed(self.trunks[key], [items[i][0] for i in members], images)
            else:
                scores = self.runs[key].predictor.scores(images)
            for row, i in enumerate(members):
                results[i] = scores[row]
        return results

    def _mixed(self, trunk: MixedTrunk, names: list[str], images: torch.Tensor) -> np.ndarray:
        slots = torch.tensor([trunk.slot[n] for n in names], device=self.device)
        autocast = self.runs[names[0]].predictor.autocast  # one precision per trunk
        with autocast or contextlib.nullcontext():
            features = trunk.features(images.to(self.device), slots)  # (B, N, d)
        scores = [None] * len(names)
        for name in dict.fromkeys(names):
            run = self.runs[name]
            rows = [i for i, n in enumerate(names) if n == name]
            with autocast or contextlib.nullcontext():
                logits = run.model.forward_head(features[rows])
            for row, value in zip(rows, probabilities(logits.float(), run.predictor.outputs.task).cpu().numpy()):
                scores[row] = value
        return np.stack(scores)

    def memory(self) -> dict:
        """Bytes of tensors held (each storage once), what the same runs as full models would hold,
        and the process's resident memory."""
        models = [r.model for r in self.runs.values()] + [t.trunk for t in self.trunks.values()]
        return {"tensor_bytes": tensor_bytes(models),
                "full_models_tensor_bytes": sum(tensor_bytes([r.model]) for r in self.runs.values()),
                "rss_bytes": resident_bytes(), "bases": len({r.base for r in self.runs.values()})}


class _Bases:
    """Frozen base weights, built once per recipe and kept once per content."""

    def __init__(self, device: torch.device):
        self.device = device
        self.by_recipe: dict[str, str] = {}
        self.by_hash: dict[str, dict[str, torch.Tensor]] = {}
        self.configs: dict[str, RunConfig] = {}

    def get(self, config: RunConfig, num_outputs: int) -> tuple[str, dict[str, torch.Tensor]]:
        backbone = {**to_dict(config.backbone), "drop_path": 0.0}  # drop path has no weights
        recipe = json.dumps({"backbone": backbone, "seed": config.train.seed, "outputs": num_outputs}, sort_keys=True)
        if recipe not in self.by_recipe:
            model, _ = build_base(config, num_outputs)  # seeded: the run's random init, if it had one
            heads = tuple(f"{h}." for h in head_names(model))
            state = {k: v.to(self.device) for k, v in model.state_dict().items() if not k.startswith(heads)}
            digest = _digest(state)
            self.by_hash.setdefault(digest, state)  # an identical base from another recipe: one copy
            self.configs.setdefault(digest, config)
            self.by_recipe[recipe] = digest
        digest = self.by_recipe[recipe]
        return digest, self.by_hash[digest]

    def forget_recipes(self) -> None:
        self.by_recipe.clear()


def _digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _load_shared(name: str, path: Path, bases: _Bases, device: torch.device) -> ServedRun:
    config = RunConfig.from_dict(RunDir(path).load_config())
    adapter = read_adapter_config(path)
    weights = {k: v.to(device) for k, v in read_adapter_weights(path).items()}
    method = create_method(adapter["medpeft_method"], adapter.get("method_config"))
    base, shared = bases.get(config, adapter["num_outputs"])
    with torch.device("meta"):  # structure only: every tensor is assigned below
        model = apply_method(create_backbone(config.backbone, adapter["num_outputs"]), method)
    trainable, total = count_parameters(model)
    tensors, missing = {}, []
    for key in model.state_dict():
        tensor = weights.get(key, shared.get(key.replace(PEFT_BASE_LAYER, ".")))
        (missing.append(key) if tensor is None else tensors.__setitem__(key, tensor))
    if missing:
        raise ValueError(f"{path}: neither the adapter nor the base has {missing[:5]} (was the adapter saved "
                         "from another backbone or method config?)")
    model.load_state_dict(tensors, assign=True, strict=True)
    left = [n for n, t in chain(model.named_parameters(), model.named_buffers()) if t.is_meta]
    if left:
        raise ValueError(f"{path}: {type(model).__name__} has tensors outside its state dict ({left[:3]}) that "
                         "cannot be shared; serve it with --no-share-base")
    _check_fingerprint(model, weights, adapter, path)
    return _served(name, path, model, config, adapter, base, trainable, total, device)


def _check_fingerprint(model: nn.Module, weights: dict, adapter: dict, path: Path) -> None:
    expected = adapter.get("base_fingerprint")
    if expected is not None and base_fingerprint(model, weights) != expected:
        raise ValueError(f"{path}: the base weights rebuilt from its config differ from those the adapter was "
                         "trained on (another checkpoint file, or a random backbone initialised differently, "
                         "e.g. by another torch version)")


def _load_full(name: str, path: Path, device: torch.device) -> ServedRun:
    model, method, config = load_run_model(path)
    trainable, total = count_parameters(model)
    adapter = read_adapter_config(path)
    model.to(device)
    return _served(name, path, model, config, adapter, f"own:{name}", trainable, total, device)


def _served(name, path, model, config, adapter, base, trainable, total, device) -> ServedRun:
    model.eval().requires_grad_(False)
    thresholds = run_thresholds(path, adapter, model, config, device)
    predictor = RunPredictor(model, config, RunOutputs.from_adapter(adapter, thresholds), device)
    return ServedRun(name, path, adapter["medpeft_method"], predictor, base, trainable, total)


def _mixed_trunks(runs: dict[str, ServedRun], bases: _Bases) -> dict[str, MixedTrunk]:
    """One :class:`MixedTrunk` per base and precision with a run whose method can be mixed (ViTs)."""
    groups: dict[str, list[ServedRun]] = defaultdict(list)
    for run in runs.values():
        if run.method in MIXERS and family_of(run.model) == "vit":
            groups[f"{run.base}/{run.predictor.config.train.precision}"].append(run)
    trunks = {}
    for key, members in groups.items():
        base = members[0].base
        config = bases.configs[base]
        with torch.device("meta"):
            trunk = create_backbone(config.backbone, 1)
        trunk.head, trunk.fc_norm = nn.Identity(), nn.Identity()  # each run's own are used
        trunk.load_state_dict(bases.by_hash[base], assign=True, strict=True)
        trunk.requires_grad_(False)
        trunks[key] = MixedTrunk(trunk, [(r.name, r.method, r.model) for r in members])
        for run in members:
            run.trunk = key
    return trunks


def tensor_bytes(modules: list[nn.Module]) -> int:
    """Bytes of the distinct tensor storages the modules hold (a shared storage counts once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for tensor in chain(module.parameters(), module.buffers()):
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def resident_bytes() -> int:
    """The process's resident set size now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
