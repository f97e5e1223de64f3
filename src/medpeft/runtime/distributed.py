"""Data-parallel training on PyTorch DistributedDataParallel: ``--nproc N`` or ``torchrun``.

Each of N processes holds the whole model and takes 1/N of every batch: the loop draws the
same global batches in the same order as a single process (same seed, same sampler), and rank
r trains on the r-th of N slices of each (:class:`ShardedBatches`); DDP averages the gradients,
so an optimiser step sees the mean over the global batch, as a single process does (each
slice's loss is weighed by its share of the batch, for a last batch that does not divide
evenly). The metrics therefore equal a one-process run with the same global batch within float
tolerance (tested), as long as nothing random happens per image (drop-path, dropout, mixup:
each rank draws its own masks for its slice) and no last batch is smaller than N (it is
skipped: every process must take part in every step).

Backends: gloo on CPU, NCCL on GPUs (one per rank: ``cuda:<local rank>``). ``torchrun`` sets
RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT and :func:`init_from_env` reads them; ``--nproc``
spawns the processes itself on a free local port. Rank 0 writes the run directory; the other
ranks compute the same validation (so early stopping decides alike) and write nothing there.
"""
from __future__ import annotations

import os
import socket
from typing import Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import Sampler


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(rank: int, world: int, device: torch.device, *, address: str = "127.0.0.1", port: int | None = None) -> None:
    """Join the process group of ``world`` processes as ``rank``."""
    if device.type == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    os.environ.setdefault("MASTER_ADDR", address)
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend_for(device), rank=rank, world_size=world)


def init_from_env(device: torch.device) -> bool:
    """Join the group torchrun describes in the environment; False when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    init(int(os.environ["RANK"]), world, device)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ShardedBatches(Sampler[list[int]]):
    """The ``rank``-th of ``world`` interleaved slices of every batch of ``batches``."""

    def __init__(self, batches: Sampler[list[int]], rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            if len(batch) < self.world:  # a last batch too small to give every process an image
                return
            yield batch[self.rank::self.world]

    def __len__(self) -> int:
        return len(self.batches)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when this process is one of several, else as it is.
    Buffers are not synced at each forward (validation runs forward passes that need no collective)."""
    _, world = rank_world()
    if world == 1:
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def sum_over_ranks(*values: float) -> list[float]:
    """Each value summed over the processes (as given when not distributed)."""
    if rank_world()[1] == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()
