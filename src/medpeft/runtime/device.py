"""Where a run computes: ``--device`` (its precision: :mod:`medpeft.runtime.precision`).

A device name is checked twice: its form when the config is built (``auto``, ``cpu``, ``cuda``,
``cuda:N``, ``mps``), and whether this machine has it when a run starts, so ``--device cuda``
on a CPU-only machine is one clear error instead of a traceback from inside PyTorch.
"""
from __future__ import annotations

import os
import re

import torch

DEVICE_FORMS = "auto | cpu | cuda | cuda:N | mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ValueError(f"device must be one of {DEVICE_FORMS}, got {name!r}")


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``; ``auto`` takes CUDA, then MPS, then the CPU."""
    check_device_name(name)
    cuda, mps = torch.cuda.is_available(), _mps_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name.startswith("cuda"):
        if not cuda:
            raise ValueError(f"--device {name}: PyTorch sees no CUDA GPU on this machine "
                             "(torch.cuda.is_available() is False); use --device cpu or --device auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), numbered from 0")
    if name == "mps" and not mps:
        raise ValueError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()


def busy_machine_warning(device: torch.device, threads: int | None = None) -> str | None:
    """A warning when other processes already keep most of this machine's cores busy (the
    1-minute load average), for a CPU run: it will share the cores and be slower than its
    figures alone; None otherwise (and on GPUs, or where the load is unknown)."""
    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return None
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if load < 0.75 * cores:
        return None
    threads = threads or torch.get_num_threads()
    return (f"the machine is busy (load {load:.1f} on {cores} cores) before this run's {threads} thread(s) "
            "begin, so it will share the cores and run slower; run one heavy job at a time when a time matters, "
            "or give each job fewer threads (docs/performance.md, \"Two jobs on one machine\")")
