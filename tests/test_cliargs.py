"""Flags generated from config dataclasses: every sub-command's --help renders."""
from __future__ import annotations

import argparse

import pytest

from medpeft.cli import build_parser, main


def subcommands() -> list[list[str]]:
    """Every sub-command path, e.g. ["finetune"], ["data", "info"]."""
    def walk(parser, prefix):
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions:
            return [prefix]
        return [path for name, sub in actions[0].choices.items() for path in walk(sub, prefix + [name])]
    return walk(build_parser(), [])


@pytest.mark.parametrize("command", subcommands(), ids=" ".join)
def test_help_renders(command, capsys):
    """A help text with a bare % (say "95% CI" in a field comment) would crash argparse's --help."""
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_one_config_assembly_for_finetune_pretrain_and_diffusion(tmp_path):
    """Defaults, then the --config recipe, then the typed flags, for every training command; another
    --method drops the recipe's method options (they belong to its method), the same one keeps them."""
    import yaml

    from medpeft.cli.diffusion import diffusion_config_from_args
    from medpeft.cli.finetune import run_config_from_args
    from medpeft.cli.pretrain import pretrain_config_from_args

    recipe = tmp_path / "run.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"spec": "synthetic-cxr", "fraction": 0.5}, "method": "lora",
                                      "method_options": {"rank": 4}, "train": {"epochs": 3, "lr": 0.01}}))
    config = run_config_from_args(parsed("finetune", "--config", str(recipe), "--epochs", "5", "--alpha", "8"))
    assert (config.method, config.method_options.rank, config.method_options.alpha) == ("lora", 4, 8)
    assert (config.data.fraction, config.train.epochs, config.train.lr) == (0.5, 5, 0.01)
    assert run_config_from_args(parsed("finetune", "--config", str(recipe), "--method", "lora")).method_options.rank == 4
    other = run_config_from_args(parsed("finetune", "--config", str(recipe), "--method", "adapter"))
    assert other.method == "adapter" and not hasattr(other.method_options, "rank")
    recipe.write_text(yaml.safe_dump({"method": "lora", "method_options": "rank 4"}))
    with pytest.raises(ValueError, match="method_options must be a mapping"):
        run_config_from_args(parsed("finetune", "--config", str(recipe)))

    recipe.write_text(yaml.safe_dump({"data": {"specs": ["synthetic-cxr"]}, "objective": "simclr",
                                      "train": {"epochs": 7}}))
    config = pretrain_config_from_args(parsed("pretrain", "--config", str(recipe), "--lr", "0.5"))
    assert (config.objective, config.train.epochs, config.train.lr) == ("simclr", 7, 0.5)
    assert pretrain_config_from_args(parsed("pretrain", "--config", str(recipe), "--objective", "mae")).objective == "mae"

    recipe.write_text(yaml.safe_dump({"data": {"specs": ["synthetic-cxr"], "img_size": 16},
                                      "unet": {"channels": [8, 16]}, "train": {"steps": 9}}))
    config = diffusion_config_from_args(parsed("diffusion", "pretrain", "--config", str(recipe), "--batch-size", "4",
                                               "--attention", "false,true"))
    assert (tuple(config.unet.channels), tuple(config.unet.attention), config.data.img_size) == ((8, 16), (False, True), 16)
    assert (config.train.steps, config.train.batch_size) == (9, 4)
