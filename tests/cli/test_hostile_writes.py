"""Writes that fail — an --out that is a file or lies under one, a folder where a CSV is wanted,
a --config that is a folder, a full disk — end in one ``error:`` line naming the path and the
cause, exit 2, no traceback, no temporary file, and the checkpoint already on disk kept; a
divergence is 1 however it shows; a failed start does not leave its log to the next run.

A full disk is simulated at the lowest write call (the OS fault is the external part): torch's
zip writer, safetensors' writer and ``os.fsync`` of text files raise what they raise on a full disk.
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import SafetensorError

import medpeft.serialization
from medpeft.cli import main

from ..runs import PNEUMONIA, VIT28, train, write_png

DATA = "synthetic-cxr?n=64&n_val=32&n_test=32&size=16"
TINY_VIT = ["--backbone", "vit_tiny", "--img-size", "16", "--patch-size", "4", "--timm-kwargs", "{depth: 1}"]


def finetune_args(out, *extra: str) -> list[str]:
    return ["finetune", "--data", DATA, *TINY_VIT, "--epochs", "1", "--batch-size", "32", "--n-bootstrap", "0",
            "--no-progress", "--out", str(out), *extra]


def temp_files(folder) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if ".tmp" in name]


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 1 and "Traceback" not in captured.err + captured.out
    assert "error:" not in captured.out  # errors go to stderr, results to stdout
    return " ".join(captured.err.split())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("writes") / "run", data=PNEUMONIA, backbone=VIT28, steps=2)


def test_out_an_existing_file_or_under_a_file_is_2(tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(finetune_args(tmp_path / "taken")) == 2
    assert f"{tmp_path / 'taken'}: it is a file, where a folder is needed" in one_error(capsys)
    assert main(finetune_args(tmp_path / "taken" / "run")) == 2
    assert f"{tmp_path / 'taken' / 'run'}: a part of the path is a file" in one_error(capsys)
    assert (tmp_path / "taken").read_text() == "mine"


def test_config_a_folder_is_2(tmp_path, capsys):
    assert main(finetune_args(tmp_path / "run", "--config", str(tmp_path))) == 2
    assert f"{tmp_path} is a folder, not a YAML file" in one_error(capsys)


def test_predict_out_a_folder_is_2_and_leaves_no_temp_file(run, tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    write_png(tmp_path / "in" / "a.png", np.zeros((28, 28), np.uint8))
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(run), "in", "--out", "runs", "--no-progress"]) == 2
    assert "--out runs is a folder; give the CSV file to write" in one_error(capsys)
    assert temp_files(tmp_path) == [] and list((tmp_path / "runs").iterdir()) == []
    assert main(["predict", str(run), "in", "--out", "in/a.png/p.csv", "--no-progress"]) == 2
    assert "in/a.png" in one_error(capsys)
    assert temp_files(tmp_path) == []


def test_export_out_a_file_or_under_a_file_is_2(run, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["export", str(run), "--out", str(tmp_path / "f")]) == 2
    assert f"--out {tmp_path / 'f'} is a file" in one_error(capsys)
    assert main(["export", str(run), "--out", str(tmp_path / "f" / "export")]) == 2
    assert f"{tmp_path / 'f' / 'export'}: a part of the path is a file" in one_error(capsys)
    assert temp_files(tmp_path) == []


def _full_disk_text(monkeypatch, name: str):
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(f".{name}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(medpeft.serialization.os, "fsync", fsync)


def test_a_full_disk_while_writing_metrics_is_2_and_leaves_no_temp_file(tmp_path, monkeypatch, capsys):
    _full_disk_text(monkeypatch, "metrics.json")
    assert main(finetune_args(tmp_path / "run")) == 2
    message = one_error(capsys)
    assert str(tmp_path / "run" / "metrics.json") in message and "no space left on the device" in message
    assert temp_files(tmp_path) == [] and not (tmp_path / "run" / "metrics.json").exists()


def test_a_full_disk_in_safetensors_is_2_and_leaves_no_temp_file(run, tmp_path, monkeypatch, capsys):
    def save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 100)  # what fitted on the disk
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 2
    message = one_error(capsys)
    assert str(tmp_path / "export" / "model.safetensors") in message and "no space left" in message
    assert temp_files(tmp_path) == [] and not (tmp_path / "export" / "model.safetensors").exists()


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_resume_finishes(tmp_path, monkeypatch, capsys):
    real, calls = torch.save, []

    def save(state, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second epoch's checkpoint: the disk is full
            with open(path, "wb") as handle:
                handle.write(b"PK\3\4" + b"\0" * 64)
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1344 vs 1282")
        return real(state, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    assert main(finetune_args(out, "--epochs", "2")) == 2
    message = one_error(capsys)
    assert str(out / "checkpoint-last.pt") in message and "no space left" in message
    assert temp_files(tmp_path) == []
    assert torch.load(out / "checkpoint-last.pt", weights_only=True)["epoch"] == 0  # epoch 1's, intact
    monkeypatch.setattr(torch, "save", real)
    assert main(finetune_args(out, "--epochs", "2", "--resume")) == 0
    assert (out / "metrics.json").is_file()


def test_a_divergence_seen_only_in_the_scores_is_1(tmp_path, capsys):
    """One step at lr 1e30: the loss was finite, the weights after it are not, the test scores are NaN."""
    code = main(finetune_args(tmp_path / "run", "--method", "fft", "--lr", "1e30", "--warmup-epochs", "0",
                              "--steps", "1"))
    assert code == 1
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err


def test_a_failed_start_leaves_no_log_to_the_next_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(finetune_args(out, "--data", f"folder:{tmp_path / 'no-such-folder'}")) == 2
    capsys.readouterr()
    (out / "log.txt").write_text("2020-01-01T00:00:00 a line of the failed start\n")  # whatever it wrote
    assert main(finetune_args(out)) == 0
    log = (out / "log.txt").read_text()
    assert "failed start" not in log and "test auroc" in log
