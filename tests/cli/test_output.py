"""What the CLI prints: uncut tables when piped, --format md|csv|json, literal user text (no
rich markup or emoji codes), per-method option help, and early refusal of bad names."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

import medpeft.cli as cli
from medpeft.cli import main
from medpeft.console import make_console
from medpeft.methods import METHODS


@pytest.fixture
def piped(monkeypatch):
    """The CLI's console writing to a non-terminal buffer at the default 80 columns."""
    buffer = io.StringIO()
    monkeypatch.setattr(cli.common, "console", make_console(file=buffer, width=80))
    return buffer


def test_piped_table_keeps_every_method_name_whole(piped):
    assert main(["methods", "--backbone", "vit_base"]) == 0
    text = piped.getvalue()
    for name, cls in METHODS.items():
        if "vit" in cls.families:
            assert f" {name} " in text, name
    assert "…" not in text
    assert "adapter-parallel" in [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2]


def test_the_real_pipe_is_grep_friendly():
    out = subprocess.run([sys.executable, "-m", "medpeft.cli", "methods", "--backbone", "vit_base"],
                         capture_output=True, text=True, check=True).stdout
    assert any("adapter-parallel" in line for line in out.splitlines())


def test_formats_csv_json_md(piped):
    main(["methods", "--backbone", "resnet50", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(piped.getvalue())))
    assert [r["method"] for r in rows] == [n for n, c in METHODS.items() if "resnet" in c.families]
    assert rows[0].keys() >= {"trainable", "without head", "% of total"}
    piped.truncate(0), piped.seek(0)
    main(["methods", "lora", "--format", "json"])
    data = json.loads(piped.getvalue())
    assert [r["option"] for r in data["rows"]] == ["--rank", "--alpha", "--dropout", "--targets"]
    assert data["rows"][0]["default"] == "8"
    piped.truncate(0), piped.seek(0)
    main(["methods", "lora", "--backbone", "unet", "--format", "json"])  # the UNet's own defaults
    assert [r["default"] for r in json.loads(piped.getvalue())["rows"]] == ["4", "None", "0.0", "None"]
    piped.truncate(0), piped.seek(0)
    main(["methods", "fft", "--format", "md"])
    assert "no options of its own" in piped.getvalue()


def test_one_methods_options_with_its_own_help(piped):
    assert main(["methods", "adapter"]) == 0
    text = " ".join(piped.getvalue().split())
    assert "--dropout" in text and "--bottleneck" in text
    assert "dropout on the bottleneck activations" in text  # the adapter's own help and default
    assert "LoRA branch" not in text


def test_finetune_help_has_a_section_per_method(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = capsys.readouterr().out
    for name, cls in METHODS.items():  # the classifiers' methods, not the UNet-only ones
        assert (f"--method {name}:" in text) == bool({"vit", "resnet"} & set(cls.families)), name
    lora = text.split("--method lora:")[1].split("--method ")[0]
    assert "dropout on the LoRA branch input (UNet: 0) (default 0.1)" in " ".join(lora.split())


@pytest.mark.parametrize("text", ["data/[archive] csv/m.csv", "runs/[/b]x", "csv:ok"])
def test_user_text_is_printed_literally(text, piped, tmp_path):
    code = main(["finetune", "--data", f"folder:{tmp_path}/{text}", "--out", str(tmp_path / text / "run"),
                 "--epochs", "1"])
    printed = piped.getvalue()
    assert code == 2
    assert f"run directory: {tmp_path}/{text}/run" in printed
    assert "🆗" not in printed


def test_pretrain_refuses_a_bad_cache_name_before_anything_runs(tmp_path, monkeypatch, piped, forbid):
    monkeypatch.chdir(tmp_path)
    forbid("medpeft.pretrain.pretrain", "a bad cache name reached pretraining")
    assert main(["pretrain", "--name", "../../escape", "--epochs", "1"]) == 2
    assert "may hold letters, digits" in piped.getvalue()
    assert not (tmp_path / "runs").exists()
