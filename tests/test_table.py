"""The one table type: bold cells in every renderer, user text literal on the terminal."""
from __future__ import annotations

import io
import json

from rich.console import Console

from medpeft.table import Table


def sample() -> Table:
    table = Table("scores [b]", ["method", "AUROC"], caption="[lo, hi]: 95% CI")
    table.add_row("FFT", "90.1 ± 0.2")
    table.add_row("LoRA", "92.0 ± 0.3 ↑1.9")
    table.bold.add((1, 1))
    return table


def test_bold_cells_in_markdown_json_and_csv():
    table = sample()
    assert "| LoRA | **92.0 ± 0.3 ↑1.9** |" in table.to_markdown()
    assert "| FFT | 90.1 ± 0.2 |" in table.to_markdown()
    assert "|:---|---:|" in table.to_markdown()  # cells with ± and ↑ still count as numbers
    assert json.loads(table.to_json())["bold"] == [{"row": 1, "column": "AUROC"}]
    assert table.to_csv().splitlines()[2] == "LoRA,92.0 ± 0.3 ↑1.9"


def test_terminal_shows_bold_and_prints_titles_and_captions_literally():
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="standard", width=80).print(sample().to_rich())
    text = buffer.getvalue()
    assert "\x1b[1m92.0 ± 0.3 ↑1.9\x1b[0m" in text
    assert "\x1b[1m90.1" not in text
    assert "scores [b]" in text and "[lo, hi]: 95% CI" in text
