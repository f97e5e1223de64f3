"""Configs check types when they are built: a YAML recipe with a wrong value is one clear error
naming the field, never a TypeError from deep inside a dataclass."""
from __future__ import annotations

import re

import pytest

from medpeft.cli import main
from medpeft.serialization import coerce
from medpeft.runtime import RunConfig, TrainConfig


@pytest.mark.parametrize("values,match", [
    ({"train": {"epochs": "many"}}, r"train\.epochs: expected a whole number, got 'many'"),
    ({"train": {"epochs": 1.7}}, r"train\.epochs: expected a whole number, got 1\.7"),
    ({"backbone": {"img_size": "28"}}, r"backbone\.img_size: .*got '28' \(str\).*without quotes"),
    ({"data": 5}, r"run config\.data: expected a mapping of options, got 5"),
    ({"train": {"keep_checkpoint": "yes"}}, r"keep_checkpoint: expected true or false"),
    ({"backbone": {"mean": "grey"}}, r"backbone\.mean.*expected a list of a number"),
    ({"method_options": {"rank": "eight"}}, r"method lora\.rank: expected a whole number"),
    ({"method_options": 8}, r"method_options: expected a mapping"),
    ({"trian": {}}, r"unknown option\(s\) \['trian'\] \(did you mean 'train'\?\)"),
])
def test_wrong_types_are_clear_errors(values, match):
    with pytest.raises(ValueError, match=match):
        RunConfig.from_dict(values)


def test_lossless_conversions_are_accepted():
    config = RunConfig.from_dict({"train": {"epochs": 3.0, "lr": 1, "min_lr": "1e-7"},
                                  "backbone": {"mean": 0.5, "img_size": 32}})
    assert config.train.epochs == 3 and isinstance(config.train.epochs, int)
    assert config.train.lr == 1.0 and config.train.min_lr == 1e-7  # YAML 1.1 reads 1e-7 as text
    assert config.backbone.mean == (0.5,)
    assert coerce(None, int | None, "x") is None
    with pytest.raises(ValueError, match="x: expected a whole number"):
        coerce(True, int, "x")  # a bool is not a number here


@pytest.mark.parametrize("flags,match", [
    (["--clip-grad", "-1"], "clip_grad must be positive"),
    (["--warmup-epochs", "-1"], "warmup_epochs cannot be negative"),
    (["--n-bootstrap", "-5"], "n_bootstrap cannot be negative"),
    (["--min-lr", "1", "--lr", "0.001"], "min_lr 1 is above the peak learning rate 0.001"),
    (["--device", "tpu"], "device must be one of auto | cpu | cuda | cuda:N | mps, got 'tpu'"),
    (["--method", "lora", "--rank", "0"], "LoRA rank must be at least 1"),
    (["--method", "lora", "--dropout", "-0.1"], "dropout must be in"),
    (["--method", "fft", "--rank", "4"], r"method fft: unknown option\(s\) \['rank'\]"),
])
def test_bad_options_fail_at_once_with_no_run_folder(flags, match, tmp_path, capsys, forbid):
    """Refused while the config is built: training (data, model, run folder) is never reached."""
    forbid("medpeft.train.finetune", "a bad option reached training")
    forbid("medpeft.train.finetune_parallel", "a bad option reached training")
    out = tmp_path / "run"
    code = main(["finetune", "--data", "synthetic-cxr", *flags, "--out", str(out)])
    assert code == 2
    printed = capsys.readouterr()
    assert "Traceback" not in printed.out + printed.err
    assert re.search(match, " ".join(printed.err.split()))  # errors go to stderr
    assert not out.exists()


def test_a_misspelt_method_is_refused_by_the_parser_with_a_close_match(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--method", "lorra"])
    assert exit_info.value.code == 2
    assert "unknown method 'lorra'. Did you mean 'lora'?" in capsys.readouterr().err


def test_yaml_recipe_with_a_wrong_type_exits_2(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train:\n  epochs: many\n")
    assert main(["finetune", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "train.epochs: expected a whole number, got 'many'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_min_lr_check_uses_the_methods_own_default_lr():
    # linear's default blr 4e-2 x 64/256 = 1e-2 peak: a 5e-3 floor is fine for it, not for fft (4e-3 x 64/256)
    RunConfig(method="linear", train=TrainConfig(min_lr=5e-3))
    with pytest.raises(ValueError, match="above the peak"):
        RunConfig(method="fft", train=TrainConfig(min_lr=5e-3))


def test_atomic_save_tensors_round_trips_and_leaves_nothing_when_it_fails(tmp_path):
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from medpeft.serialization import atomic_save_tensors

    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64)}
    atomic_save_tensors(tmp_path / "w.safetensors", tensors)
    loaded = load_file(str(tmp_path / "w.safetensors"))
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    shared = torch.zeros(4)
    with pytest.raises(RuntimeError):  # safetensors refuses tensors that share memory
        atomic_save_tensors(tmp_path / "w.safetensors", {"x": shared, "y": shared})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # the old file stays, no .tmp
    assert torch.equal(load_file(str(tmp_path / "w.safetensors"))["a"], tensors["a"])
    (tmp_path / "d.safetensors").mkdir()  # the rename fails after the temporary file is written
    with pytest.raises(OSError):
        atomic_save_tensors(tmp_path / "d.safetensors", tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.safetensors", "w.safetensors"]
