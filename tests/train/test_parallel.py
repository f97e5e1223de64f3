"""Data-parallel fine-tuning (--nproc): two CPU processes (gloo) train what one process trains
with the same global batch, and the batches split as runtime/distributed.py says."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import BatchSampler, RandomSampler

from medpeft.methods._base import ADAPTER_WEIGHTS
from medpeft.runtime import build_model, resolve_run_config
from medpeft.runtime.distributed import ShardedBatches
from medpeft.train import finetune, finetune_parallel

from .tiny import QUIET, TINY_VIT, tiny_run

STILL = dataclasses.replace(TINY_VIT, drop_path=0.0)  # nothing random per image: ranks and one process agree
# How far a weight of the two-process run may be from the one-process run's. Measured (fp32,
# 8 AdamW steps): at most 7e-7, where the all-reduce's sum of two slice gradients rounds
# differently from one batch's and Adam divides by sqrt(v), which magnifies the rounding in
# elements whose gradient is ~0 (the key bias: softmax ignores it, so its gradient is rounding
# alone). One step moves a weight by up to the lr, 5e-4. Measured on broken copies: processes
# that do not all-reduce their gradients are 9e-4 off; slices averaged without weighing them by
# their share of the batch, 1.6e-4.
WEIGHT_ATOL = 1e-5


@pytest.mark.slow  # two spawned interpreters importing torch: 25-80 s on this 2-core machine
def test_two_processes_equal_one(tmp_path):
    # 96 training images at batch 31: 4 global batches a step, of 16 + 15 images and the last of
    # 2 + 1, so each slice's loss must be weighed by its share (runtime/loop.py) for the average
    # over the processes to be the batch's mean; fft: every weight synced.
    # fp32: "auto" may pick bf16 autocast on this CPU (a measured probe), whose rounding (4e-3)
    # the all-reduce's order would turn into weight differences of 1e-3, hiding a real mismatch
    config = tiny_run("fft", backbone=STILL, epochs=2, batch_size=31, feature_cache="off", precision="fp32")
    one = finetune(config, tmp_path / "one", console=QUIET, progress=False)
    two = finetune_parallel(config, tmp_path / "two", 2, console=QUIET, progress=False)
    # the trained weights rank 0 saved are the one process's, and training moved every one of
    # them far more than they differ (so equal files are not merely two untrained models)
    trained = {run: load_file(str(tmp_path / run / ADAPTER_WEIGHTS)) for run in ("one", "two")}
    initial, _, _ = build_model(resolve_run_config(config)[0], num_outputs=5)
    before = initial.state_dict()
    assert set(trained["one"]) == set(trained["two"]) == set(before)  # fft: the whole model
    for name, weight in trained["one"].items():
        gap = (trained["two"][name] - weight).abs().max().item()
        assert gap <= WEIGHT_ATOL, f"{name}: two processes differ from one by {gap:.3g}"
        assert (weight - before[name]).abs().max().item() > 10 * WEIGHT_ATOL, f"{name} did not train"
    assert [h["steps"] for h in two["history"]] == [h["steps"] for h in one["history"]] == [4, 8]
    for a, b in zip(one["history"], two["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_auroc"] == pytest.approx(a["val_auroc"], abs=1e-4)
    for split in ("val", "test"):
        assert two[split]["auroc"] == pytest.approx(one[split]["auroc"], abs=1e-4)
    assert {p.name for p in (tmp_path / "two").iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}


def test_each_process_takes_its_slice_of_the_same_global_batches():
    def batches():
        return BatchSampler(RandomSampler(range(10), generator=torch.Generator().manual_seed(3)), 4, drop_last=False)

    whole = list(batches())
    shards = [list(ShardedBatches(batches(), rank, 2)) for rank in (0, 1)]
    assert [sorted(a + b) for a, b in zip(*shards)] == [sorted(b) for b in whole]
    assert [len(s) for s in shards[0]] == [2, 2, 1]
    last_of_one = list(ShardedBatches(BatchSampler(range(9), 4, False), 0, 2))
    assert len(last_of_one) == 2  # a last batch of 1 image cannot feed 2 processes: skipped


def test_bad_nproc_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--nproc"):
        finetune_parallel(tiny_run("fft"), tmp_path / "x", 0)
    with pytest.raises(ValueError, match="at least 4"):
        finetune_parallel(tiny_run("fft", batch_size=3), tmp_path / "x", 4)
