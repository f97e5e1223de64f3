"""A tiny fine-tuning run with validation sized to its label budget (DataConfig.val_fraction, issue 26)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from medpeft.data import load_dataset
from medpeft.data.fractions import validation_indices
from medpeft.runtime import DataConfig, RunConfig, RunDir
from medpeft.train import finetune
from medpeft.train import finetuning as loop_module

from .tiny import QUIET, TINY_DATA, tiny_run


def with_data(config: RunConfig, **data) -> RunConfig:
    return dataclasses.replace(config, data=DataConfig(spec=TINY_DATA, fraction=0.5, **data))


def adapter(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter_model.safetensors"))


def test_validation_subset_chooses_epoch_and_thresholds_and_the_default_changes_nothing(tmp_path, monkeypatch):
    seen = []
    choose = loop_module.validation_thresholds
    monkeypatch.setattr(loop_module, "validation_thresholds",
                        lambda model, loader, *a, **k: seen.append(len(loader.dataset)) or choose(model, loader, *a, **k))
    base = tiny_run(epochs=3)
    plain = finetune(with_data(base), tmp_path / "plain", console=QUIET)
    whole = finetune(with_data(base, val_fraction=1.0), tmp_path / "whole", console=QUIET)
    matched = finetune(with_data(base, val_fraction="match"), tmp_path / "match", console=QUIET)
    # unset (the default) and 1.0 both validate on all 48 images: the same weights, bit for bit, and metrics
    a, b = adapter(tmp_path / "plain"), adapter(tmp_path / "whole")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("val", "test", "best_epoch", "history"):
        assert plain[key] == whole[key], key
    assert "validation:" not in (tmp_path / "plain" / "log.txt").read_text()
    # match: the nested subset at the training fraction with >= 5 positives per finding, seeded by fraction_seed
    labels = load_dataset(TINY_DATA).val.labels
    kept = validation_indices(labels, "multilabel", 0.5, seed=0, min_per_class=5)
    assert seen == [48, 48, len(kept)] and len(kept) < 48
    assert f"validation: {len(kept)} of 48 images (val_fraction match = 0.5, >= 5 positives per finding)" in \
        (tmp_path / "match" / "log.txt").read_text()
    assert matched["val"] != plain["val"]  # chosen on fewer images
    saved = RunConfig.from_dict(RunDir(tmp_path / "match").load_config())
    assert (saved.data.val_fraction, saved.data.val_min_per_class) == ("match", 5)
    assert np.load(tmp_path / "match" / "predictions-test.npz")["labels"].shape[0] == 64  # test stays whole


def test_a_config_yaml_without_the_new_fields_reads_as_the_default():
    values = tiny_run().to_dict()
    for name in ("val_fraction", "val_min_per_class"):
        values["data"].pop(name)
    assert RunConfig.from_dict(values).data == DataConfig(spec=TINY_DATA)
    with pytest.raises(ValueError, match="val_fraction must be a fraction"):
        RunConfig.from_dict({**values, "data": {**values["data"], "val_fraction": 1.5}})
