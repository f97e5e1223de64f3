"""--precision auto: bf16 where it is fast, decided by the device and, on CPUs, their flags or a probe."""
from __future__ import annotations

import json

import pytest
import torch

from medpeft.runtime import precision as precision_module
from medpeft.runtime import autocast_for, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags,expected,why", [
    ({"avx512f", "amx_tile", "amx_bf16"}, "bf16", "AMX-BF16"),
    ({"avx512f", "avx2"}, "fp32", "neither AMX-BF16 nor AVX512-BF16"),
    (set(), "fp32", "flags are unknown"),
])
def test_auto_on_a_cpu_follows_its_flags(monkeypatch, flags, expected, why):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: flags)
    monkeypatch.setattr(precision_module, "probe_bf16_speedup", lambda: pytest.fail("no probe needed"))
    name, reason = resolve_precision(CPU, "auto")
    assert name == expected and why in reason and reason.startswith("auto: ")


@pytest.mark.parametrize("speedup,expected", [(2.0, "bf16"), (0.8, "fp32")])
def test_avx512_bf16_without_amx_is_decided_by_a_cached_probe(monkeypatch, tmp_path, speedup, expected):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path))
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    calls = []

    def seconds(size, repeats, dtype):
        calls.append(dtype)
        return 1.0 if dtype == torch.float32 else 1.0 / speedup

    monkeypatch.setattr(precision_module, "_matmul_seconds", seconds)
    assert resolve_precision(CPU, "auto")[0] == expected
    assert resolve_precision(CPU, "auto")[0] == expected
    assert len(calls) == 2  # measured once (fp32 + bf16), then read from the cache
    cached = json.loads((tmp_path / "cpu-precision.json").read_text())
    assert list(cached.values()) == [speedup]


def test_explicit_precisions_are_taken_as_given():
    assert resolve_precision(CPU, "fp32") == ("fp32", "as configured")
    assert resolve_precision(CPU, "bf16") == ("bf16", "as configured")
    assert autocast_for(CPU, "fp32") is None
    assert autocast_for(CPU, "bf16").fast_dtype == torch.bfloat16


def test_gpus_take_bf16_when_they_support_it(monkeypatch):
    for supported, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert resolve_precision(torch.device("cuda"), "auto")[0] == expected


def test_this_machine_gets_the_answer_its_flags_call_for(monkeypatch, tmp_path):
    """Unpatched: the real flags (and, on an AVX512-BF16 CPU without AMX, the real probe, whose
    measured ratio is read back from its cache) decide, and the reason says which."""
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path))  # a probe of its own, not the user's cache
    flags = precision_module.cpu_flags()
    name, reason = resolve_precision(CPU, "auto")
    assert reason.startswith("auto: ")
    if "amx_bf16" in flags:
        assert name == "bf16" and "AMX-BF16" in reason
    elif "avx512_bf16" not in flags:
        assert name == "fp32" and "neither AMX-BF16 nor AVX512-BF16" in reason
    else:
        [ratio] = json.loads((tmp_path / precision_module.PROBE_FILE).read_text()).values()
        assert name == ("bf16" if ratio >= precision_module.PROBE_SPEEDUP else "fp32")
        assert f"measured bf16 matmul at {ratio:.2f}x" in reason
