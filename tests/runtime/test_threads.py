"""Threads that do not fight: medpeft shortens libgomp's spin before torch loads it (unless the
user chose a wait policy), and a CPU run started on a busy machine says so."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import medpeft
from medpeft.runtime import device as device_module

READ = "import medpeft, os; print(os.environ.get('GOMP_SPINCOUNT'))"


def _spin_count_after_import(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", READ], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_importing_medpeft_first_sets_a_short_spin_and_keeps_the_users_choice():
    assert _spin_count_after_import() == medpeft.OMP_SPIN_COUNT == "2000"
    assert _spin_count_after_import(GOMP_SPINCOUNT="5") == "5"
    assert _spin_count_after_import(OMP_WAIT_POLICY="ACTIVE") == "None"


@pytest.mark.parametrize("load, warned", [(0.4, False), (1.4, False), (1.5, True), (3.0, True)])
def test_a_busy_machine_is_named_from_its_load_average(monkeypatch, load, warned):
    monkeypatch.setattr(device_module.os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.setattr(device_module.os, "cpu_count", lambda: 2)
    message = device_module.busy_machine_warning(torch.device("cpu"), threads=2)
    assert (message is not None) == warned
    if warned:
        assert f"load {load:.1f} on 2 cores" in message and "2 thread(s)" in message
        assert "start:" not in message  # log.txt readers count "start:" lines as run starts


def test_no_busy_warning_off_the_cpu(monkeypatch):
    monkeypatch.setattr(device_module.os, "getloadavg", lambda: (99.0, 0.0, 0.0))
    assert device_module.busy_machine_warning(torch.device("cuda")) is None
