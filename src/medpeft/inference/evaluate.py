"""Re-scoring a finished run directory, on its own data or on another dataset spec.

Binary and multilabel runs are also scored at their decision thresholds (chosen on the run's
own validation split when it finished, stored in ``adapter_config.json``), whatever data is
scored. A run from before thresholds were stored gets them recomputed from its own validation
split with its saved weights, which gives what training would have stored.
"""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..methods import Method, load_adapter, read_adapter_config
from ..runtime import (RunConfig, RunDir, autocast_for, build_base, compute_metrics, load_splits, make_loader,
                       predict, resolve_device, subgroup_metrics, validation_thresholds)


def load_run_model(run_dir) -> tuple[nn.Module, Method, RunConfig]:
    """The run's backbone (with its pretrained checkpoint, if any) plus its saved adapter."""
    run = RunDir(run_dir)
    config = RunConfig.from_dict(run.load_config())
    adapter = read_adapter_config(run.path)
    model, _ = build_base(config, adapter["num_outputs"])
    model, method = load_adapter(model, run.path)
    model.eval()
    return model, method, config


def evaluate_run(run_dir, *, data_spec: str | None = None, data_root: str | None = None,
                 split: str = "test", n_bootstrap: int = 1000) -> dict:
    """Metrics of a run's saved weights on ``split`` of its dataset (or of ``data_spec``)."""
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap cannot be negative, got {n_bootstrap}")
    run = RunDir(run_dir)
    config = RunConfig.from_dict(run.load_config())
    adapter = read_adapter_config(run.path)
    device = resolve_device(config.train.device)
    data = config.data
    if data_spec is not None:
        data = dataclasses.replace(data, spec=data_spec, data_root=data_root)
    splits = load_splits(data, config.backbone)
    check_labels(adapter, splits.info, run_dir, data.spec)
    model, _, config = load_run_model(run_dir)
    model.to(device)
    autocast = autocast_for(device, config.train.precision)
    thresholds = run_thresholds(run.path, adapter, model, config, device, own=splits if data_spec is None else None)
    dataset = splits.split(split)
    info = splits.info
    scores, labels = predict(model, make_loader(dataset, config.train, shuffle=False), info.task, device, autocast)
    metrics = compute_metrics(scores, labels, info.task, info.column_names, n_bootstrap=n_bootstrap,
                              seed=config.train.seed, thresholds=thresholds)
    if dataset.subgroups is not None:
        metrics["subgroups"] = subgroup_metrics(scores, labels, dataset.subgroups, info.task, info.column_names,
                                                column=info.subgroup, thresholds=thresholds,
                                                n_bootstrap=min(n_bootstrap, 200), seed=config.train.seed)
    return metrics


def run_thresholds(run_dir, adapter: dict, model: nn.Module, config: RunConfig, device, *,
                   own=None) -> dict[str, float] | None:
    """The run's decision thresholds ({label: threshold}; None for multiclass, which takes the
    argmax): the stored ones, or for a run from before thresholds were stored, those chosen on its
    own validation split (``own``: its splits, if already loaded) with its saved weights."""
    thresholds = stored_thresholds(adapter, run_dir)
    if thresholds is None and adapter.get("task", "binary") != "multiclass":
        own = own if own is not None else load_splits(config.data, config.backbone)
        if own.info.task != "multiclass":
            _, thresholds = validation_thresholds(model, make_loader(own.val, config.train, shuffle=False),
                                                  own.info, device,
                                                  autocast=autocast_for(device, config.train.precision))
    return thresholds


def stored_thresholds(adapter: dict, run_dir) -> dict[str, float] | None:
    """The decision thresholds saved with a run ({label: threshold}), or None if it has none."""
    thresholds = adapter.get("thresholds")
    if thresholds is None:
        return None
    if not isinstance(thresholds, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in thresholds.values()):
        raise ValueError(f"{run_dir}/adapter_config.json: 'thresholds' must map each label to a number, got "
                         f"{thresholds!r}; delete the entry to recompute them from the run's validation split")
    return {str(k): float(v) for k, v in thresholds.items()}


def check_labels(adapter: dict, info, run_dir, spec: str) -> None:
    """The data must score what the model predicts: same task, same label names in the same order."""
    ours, theirs = list(adapter.get("labels") or []), list(info.column_names)
    if adapter["num_outputs"] != info.num_outputs or (ours and ours != theirs):
        same_set = sorted(ours) == sorted(theirs)
        raise ValueError(f"{run_dir} predicts {adapter['num_outputs']} output(s) {ours} but {spec} has "
                         f"{info.num_outputs} {theirs}"
                         + ("; the same labels in another order — reorder the data's label columns"
                            if same_set else "; evaluate on data with the run's labels"))
    if adapter.get("task") not in (None, info.task):
        raise ValueError(f"{run_dir} was trained for a {adapter['task']} task, but {spec} is {info.task}")
