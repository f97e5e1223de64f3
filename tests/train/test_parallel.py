"""Data-parallel fine-tuning (--nproc): two CPU processes (gloo) train what one process trains
with the same global batch, and the batches split as runtime/distributed.py says."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import BatchSampler, RandomSampler

from medpeft.runtime.distributed import ShardedBatches
from medpeft.train import finetune, finetune_parallel

from .tiny import QUIET, TINY_VIT, tiny_run

STILL = dataclasses.replace(TINY_VIT, drop_path=0.0)  # nothing random per image: ranks and one process agree


@pytest.mark.slow  # two spawned interpreters importing torch: 25-80 s on this 2-core machine
def test_two_processes_equal_one(tmp_path):
    # 96 training images at batch 32: 3 global batches of 16 + 16 a step; fft: every weight synced
    config = tiny_run("fft", backbone=STILL, epochs=2, feature_cache="off")
    one = finetune(config, tmp_path / "one", console=QUIET, progress=False)
    two = finetune_parallel(config, tmp_path / "two", 2, console=QUIET, progress=False)
    assert [h["steps"] for h in two["history"]] == [h["steps"] for h in one["history"]] == [3, 6]
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
