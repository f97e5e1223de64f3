"""Re-scoring a finished run directory, on its own data or on another dataset spec."""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..methods import Method, load_adapter, read_adapter_config
from ..runtime import (RunConfig, RunDir, autocast_for, build_base, evaluate, load_splits, make_loader,
                       resolve_device)


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
    loader = make_loader(splits.split(split), config.train, shuffle=False)
    return evaluate(model, loader, splits.info, device, n_bootstrap=n_bootstrap, seed=config.train.seed,
                    autocast=autocast_for(device, config.train.precision))


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
