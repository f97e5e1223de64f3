"""In which precision a run computes: ``--precision auto | fp32 | bf16 | fp16``.

``auto`` takes bf16 autocast where bf16 is fast and fp32 elsewhere, and says why:

- **CUDA**: bf16 when the GPU supports it (Ampere and later), else fp32.
- **CPU**: bf16 only on CPUs with bf16 matrix instructions. Whether a CPU has them differs
  between machines of the same cloud type: with AMX-BF16 (Sapphire Rapids and later) a bf16
  matmul ran at 1,922 GFLOP/s against 283 for fp32 and bf16 autocast trained ViT-Small at 1.54x
  fp32; without native bf16 (Ice Lake, this project's test machine) PyTorch emulates it and a
  bf16 matmul runs at a quarter of fp32's speed or worse. So the CPU's flags decide: AMX-BF16
  means bf16; neither AMX-BF16 nor AVX512-BF16 means fp32; AVX512-BF16 alone (Cooper Lake, Zen 4)
  is decided by a measured probe (bf16 vs fp32 matmul, once per CPU and torch version, cached in
  ``$MEDPEFT_CACHE/cpu-precision.json``).
- **MPS**: fp32.

bf16 changes results at the level of its 8-bit mantissa; ``tests/train/test_precision.py`` checks
that a short bf16 run stays within a stated tolerance of fp32.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from ..serialization import atomic_write_text, dumps_json
from ..models.cache import cache_root

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PROBE_FILE = "cpu-precision.json"
PROBE_SPEEDUP = 1.3  # a probed CPU takes bf16 when its bf16 matmul is at least this much faster


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")


def resolve_precision(device: torch.device, precision: str) -> tuple[str, str]:
    """(fp32 | bf16 | fp16, why) for ``precision`` on ``device``."""
    check_precision(precision)
    if precision != "auto":
        return precision, "as configured"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU supports bf16"
        return "fp32", "auto: this GPU has no bf16 support"
    if device.type == "cpu":
        fast, why = cpu_bf16_is_fast()
        return ("bf16" if fast else "fp32"), f"auto: {why}"
    return "fp32", f"auto: fp32 on {device.type}"


def autocast_for(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (None for fp32)."""
    name, _ = resolve_precision(device, precision)
    if name == "fp32":
        return None
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if name == "bf16" else torch.float16)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_bf16_is_fast() -> tuple[bool, str]:
    """Whether bf16 autocast pays on this CPU, and why (by its flags, else by a cached probe)."""
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return True, "this CPU has AMX-BF16 (bf16 matrix units)"
    if "avx512_bf16" not in flags:
        known = "" if flags else " (its flags are unknown)"
        return False, (f"this CPU has neither AMX-BF16 nor AVX512-BF16{known}, so bf16 matmuls "
                       "would be emulated, slower than fp32")
    ratio = probe_bf16_speedup()
    verdict = "bf16" if ratio >= PROBE_SPEEDUP else "fp32"
    return ratio >= PROBE_SPEEDUP, (f"this CPU has AVX512-BF16 but no AMX; measured bf16 matmul at {ratio:.2f}x "
                                    f"fp32 (cached probe; bf16 from {PROBE_SPEEDUP}x), so {verdict}")


def probe_bf16_speedup(size: int = 1024, repeats: int = 3) -> float:
    """bf16 / fp32 matmul throughput on this CPU, measured once per CPU and torch version."""
    path = cache_root() / PROBE_FILE
    key = f"{cpu_model()} | {','.join(sorted(cpu_flags()))} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    known = _read_json(path)
    if key in known:
        return float(known[key])
    seconds = {dtype: _matmul_seconds(size, repeats, dtype) for dtype in (torch.float32, torch.bfloat16)}
    ratio = round(seconds[torch.float32] / seconds[torch.bfloat16], 3)  # as cached: every call agrees
    known[key] = ratio
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps_json(known, indent=1) + "\n")
    return ratio


def _matmul_seconds(size: int, repeats: int, dtype: torch.dtype) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return (time.perf_counter() - start) / repeats


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


__all__ = ["PRECISIONS", "autocast_for", "check_precision", "cpu_bf16_is_fast", "cpu_flags", "resolve_precision",
           "probe_bf16_speedup"]
