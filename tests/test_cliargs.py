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
