"""Re-scoring a finished run directory, on its own data or on another dataset spec."""
from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..methods import Method, load_adapter, read_adapter_config
from ..runs import RunDir
from ..train.build import autocast_for, build_base, load_splits, make_loader, resolve_device
from ..train.config import RunConfig
from .evaluate import evaluate


def load_run_model(run_dir) -> tuple[nn.Module, Method, RunConfig]:
    """The run's backbone (with its pretrained checkpoint, if any) plus its saved adapter."""
    run = RunDir(run_dir)
    config = RunConfig.from_dict(run.load_config())
    model, _ = build_base(config, read_adapter_config(run.path)["num_outputs"])
    model, method = load_adapter(model, run.path)
    model.eval()
    return model, method, config


def evaluate_run(run_dir, *, data_spec: str | None = None, data_root: str | None = None,
                 split: str = "test", n_bootstrap: int = 1000) -> dict:
    """Metrics of a run's saved weights on ``split`` of its dataset (or of ``data_spec``)."""
    config = RunConfig.from_dict(RunDir(run_dir).load_config())
    data = config.data
    if data_spec is not None:
        data = dataclasses.replace(data, spec=data_spec, data_root=data_root)
    splits = load_splits(data, config.backbone.img_size, config.backbone.mean, config.backbone.std)
    model, _, config = load_run_model(run_dir)
    if read_adapter_config(run_dir)["num_outputs"] != splits.info.num_outputs:
        raise ValueError(f"{run_dir} predicts {read_adapter_config(run_dir)['num_outputs']} outputs but "
                         f"{data.spec} has {splits.info.num_outputs} ({', '.join(splits.info.column_names)})")
    device = resolve_device(config.train.device)
    model.to(device)
    loader = make_loader(splits.split(split), config.train, shuffle=False)
    return evaluate(model, loader, splits.info, device, n_bootstrap=n_bootstrap, seed=config.train.seed,
                    autocast=autocast_for(device, config.train.precision))
