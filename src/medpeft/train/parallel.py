"""``medpeft finetune --nproc N``: one run trained by N data-parallel processes on this machine
(runtime/distributed.py says how the batches are split and why the result equals one process's).

The processes are spawned here (``torch.multiprocessing.spawn``) on a free local port; under
``torchrun`` instead, :func:`medpeft.train.finetune` joins the group torchrun set up. On CPU
each process takes an equal share of torch's threads; on GPUs each takes one device.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from rich.console import Console

from ..runtime import RunConfig, RunDir, resolve_device, resolve_run_config
from ..runtime.distributed import free_port, init
from .finetuning import finetune


def finetune_parallel(config: RunConfig, out_dir, nproc: int, *, resume: bool = False, console: Console | None = None,
                      progress: bool = True) -> dict:
    """:func:`finetune` on ``nproc`` processes; the metrics rank 0 wrote."""
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a whole number of processes >= 1, got {nproc!r}")
    if nproc == 1:
        return finetune(config, out_dir, resume=resume, console=console, progress=progress)
    config, _ = resolve_run_config(config)  # fail here, not in N processes
    device = resolve_device(config.train.device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--nproc runs on CPU (gloo) or CUDA GPUs (NCCL), not {device.type}")
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise ValueError(f"--nproc {nproc} needs {nproc} GPUs; this machine has {torch.cuda.device_count()}")
    if config.train.batch_size < nproc:
        raise ValueError(f"batch_size {config.train.batch_size} is the global batch, split over {nproc} processes: "
                         f"it must be at least {nproc}")
    threads = max(1, torch.get_num_threads() // nproc) if device.type == "cpu" else torch.get_num_threads()
    mp.spawn(_worker, args=(nproc, config, str(out_dir), resume, progress, free_port(), threads), nprocs=nproc,
             join=True)
    return RunDir(out_dir).load_metrics()


def _worker(rank: int, world: int, config: RunConfig, out_dir: str, resume: bool, progress: bool, port: int,
            threads: int) -> None:
    torch.set_num_threads(threads)
    init(rank, world, resolve_device(config.train.device), port=port)
    try:
        finetune(config, out_dir, resume=resume, progress=progress and rank == 0,
                 console=None if rank == 0 else Console(quiet=True))
    finally:
        dist.destroy_process_group()
