"""An evaluation split transformed once (runtime/build.py ``eval_loader``): the same batches as
a fresh unshuffled DataLoader, every time it is iterated; an ordinary loader above the budget."""
from __future__ import annotations

import torch

from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, TrainConfig, eval_loader, load_splits, make_loader
from medpeft.runtime.build import PreparedBatches


def test_prepared_batches_are_the_loaders_batches_every_time():
    splits = load_splits(DataConfig(spec="synthetic-cxr?n=32&n_val=70&n_test=8&size=16"),
                         BackboneConfig("vit_tiny", img_size=16, patch_size=4, mean=[0.5], std=[0.5]))
    train = TrainConfig(eval_batch_size=32)
    prepared = eval_loader(splits.val, train)
    assert isinstance(prepared, PreparedBatches) and len(prepared) == 3  # 70 images: 32 + 32 + 6
    fresh = list(make_loader(splits.val, train, shuffle=False))
    for _ in range(2):
        got = list(prepared)
        assert len(got) == len(fresh)
        for (images, targets), (images2, targets2) in zip(got, fresh):
            assert torch.equal(images, images2) and torch.equal(targets, targets2)
            assert images.dtype == images2.dtype and targets.dtype == targets2.dtype
    assert not isinstance(eval_loader(splits.val, train, budget=1000), PreparedBatches)
