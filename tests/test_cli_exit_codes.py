"""The CLI's exit codes through ``medpeft.cli.main``: 0 done, 1 diverged, 2 bad input, 130 interrupted.

Scripts and sweeps tell these apart: 1 means "lower the lr and --resume", 2 "fix the command",
130 "the user stopped it". Bad input ends with one ``error:`` line, not a traceback.
"""
from __future__ import annotations

import pytest

import medpeft.pretrain
import medpeft.runtime
import medpeft.train
from medpeft.cli import main

DATA = "synthetic-cxr?n=64&n_val=32&n_test=32&size=16"
TINY_VIT = ["--backbone", "vit_tiny", "--img-size", "16", "--patch-size", "4", "--timm-kwargs", "{depth: 2}"]


def finetune_args(out, *extra: str) -> list[str]:
    return ["finetune", "--data", DATA, *TINY_VIT, "--epochs", "1", "--batch-size", "32", "--n-bootstrap", "0",
            "--no-progress", "--out", str(out), *extra]


def test_success_is_0(capsys):
    assert main(["data", "info", DATA]) == 0
    assert "multilabel" in capsys.readouterr().out


def test_a_diverging_run_is_1_and_keeps_its_run_directory(tmp_path, capsys):
    """AdamW at lr 1e30 overflows the weights in its first step: the second loss is NaN."""
    code = main(finetune_args(tmp_path / "run", "--method", "fft", "--lr", "1e30", "--epochs", "2"))
    assert code == 1
    out = capsys.readouterr().err
    assert "training diverged" in out and "loss became nan" in out
    assert "diverged" in (tmp_path / "run" / "log.txt").read_text()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_diverging_pretraining_is_1(tmp_path, monkeypatch, capsys):
    def diverges(*args, **kwargs):
        raise medpeft.runtime.TrainingDiverged("loss became nan at epoch 1, step 1")

    monkeypatch.setattr(medpeft.pretrain, "pretrain", diverges)
    assert main(["pretrain", "--data", DATA, "--out", str(tmp_path / "mae")]) == 1
    assert "pretraining diverged" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["finetune", "--data", DATA, "--method", "lora", "--rank", "0"], "LoRA rank must be at least 1"),
    (["finetune", "--data", "medmnist:pneumoniamnist", "--data-root", "{tmp}/empty"], "pneumoniamnist"),
    (["finetune", "--data", "folder:{tmp}/no-such-folder"], "not found"),
    (["finetune", "--data", DATA, "--fraction", "1.5"], "fraction"),
    (["eval", "{tmp}/not-a-run"], "not a medpeft run directory"),
    (["data", "info", "nosuch:thing"], "unknown"),
])
def test_bad_input_is_2_with_one_error_line(argv, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "finetune":
        argv += [*TINY_VIT, "--no-progress", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    out = capsys.readouterr().err  # errors go to stderr
    assert out.count("error:") == 1 and "Traceback" not in out
    assert message in " ".join(out.split())  # rich wraps long lines


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "three"], "invalid int value"),
    (["--method", "nosuch"], "unknown method 'nosuch'"),  # checked by the parser, with the valid names
])
def test_an_unparsable_flag_is_argparses_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--data", DATA, *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_an_interrupt_is_130(command, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(medpeft.train if command == "finetune" else medpeft.pretrain, command, interrupted)
    argv = finetune_args(tmp_path / "run", "--method", "lora") if command == "finetune" else \
        ["pretrain", "--data", DATA, "--out", str(tmp_path / "mae")]
    try:
        code = main(argv)
    except KeyboardInterrupt:  # would otherwise stop the whole test session
        pytest.fail("main() let the KeyboardInterrupt through instead of returning 130")
    assert code == 130
    assert "interrupted" in capsys.readouterr().out
