"""The served answer is `medpeft predict`'s in every precision: per-sample LoRA batches (mixed
adapters in one pass) under a FORCED bf16 and fp32, not whatever ``auto`` means on this CPU.
Under bf16 the mixed pass once added the low-rank terms in another order and rounding than the
run's own layer and moved answers by up to 1.3e-3."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml

from medpeft.inference import RunPredictor
from medpeft.runtime.precision import resolve_precision
from medpeft.serve.pool import AdapterPool

MIXED = ("pneu-lora", "breast-lora", "breast-linear")


def with_precision(served_runs, root, precision: str) -> dict:
    """Copies of the runs whose config says ``precision`` (what serve and predict both read), their
    LoRA B matrices made large (3 training steps leave them ~1e-5, too small to show rounding)."""
    from safetensors.torch import load_file, save_file

    copies, generator = {}, torch.Generator().manual_seed(0)
    for name in MIXED:
        copy = root / precision / name
        shutil.copytree(served_runs[name], copy)
        config = yaml.safe_load((copy / "config.yaml").read_text())
        config["train"]["precision"] = precision
        (copy / "config.yaml").write_text(yaml.safe_dump(config))
        weights = load_file(copy / "adapter_model.safetensors")
        for key, tensor in weights.items():
            if ".lora_B_" in key:
                weights[key] = tensor + 0.05 * torch.randn(tensor.shape, generator=generator)
        save_file(weights, copy / "adapter_model.safetensors")
        copies[name] = copy
    return copies


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mixed_lora_batches_equal_predict_in_forced_precision(served_runs, xray_images, tmp_path, precision):
    if precision == "bf16" and resolve_precision(torch.device("cpu"), "bf16")[0] != "bf16":
        pytest.skip("this CPU has no bf16 autocast")
    runs = with_precision(served_runs, tmp_path, precision)
    pool = AdapterPool.load(runs)
    assert len(pool.trunks) == 1 and all(r.trunk for r in pool.runs.values())  # the mixed path is taken
    names = list(runs)
    predictors = {name: RunPredictor.load(path) for name, path in runs.items()}
    items = [(names[i % 3], predictors[names[i % 3]].prepare(image / 255.0)) for i, image in enumerate(xray_images)]
    served = np.stack(pool.predict(items))
    alone = np.stack([predictors[name].scores(torch.stack([x for n, x in items if n == name]))
                      for name in names], axis=1).reshape(len(items), -1)  # predict's batches, one per run
    np.testing.assert_allclose(served, alone, rtol=0, atol=1e-6)
    unmixed = np.stack(AdapterPool.load(runs, mix=False).predict(items))
    np.testing.assert_allclose(served, unmixed, rtol=0, atol=1e-6)
