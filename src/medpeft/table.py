"""One table type for everything medpeft prints: built once as plain rows, rendered as a
terminal table, Markdown, CSV or JSON (``--format table|md|csv|json``), so the terminal,
``table.md`` and a program reading the CSV can never disagree.

A cell can be emphasised (``bold``, e.g. the best result of a column): bold on the terminal,
``**...**`` in Markdown, listed under ``"bold"`` in JSON; CSV cells stay plain text.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from .console import print_renderable

FORMATS = ("table", "md", "csv", "json")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    rules_after: set[int] = field(default_factory=set)  # row indices followed by a separator
    caption: str = ""
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) indices shown in bold

    def add_row(self, *cells, rule: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])
        if rule:
            self.rules_after.add(len(self.rows) - 1)

    def to_rich(self) -> RichTable:
        # Text, not str, here and in the cells: user text is shown literally, never read as markup
        table = RichTable(title=Text(self.title, style="table.title") if self.title else None,
                          caption=Text(self.caption, style="table.caption") if self.caption else None,
                          caption_justify="left", box=box.SQUARE_DOUBLE_HEAD)
        for column, right in zip(self.columns, self.right_aligned()):
            table.add_column(column, justify="right" if right else "left", overflow="fold")
        for index, row in enumerate(self.rows):
            cells = [Text(cell, style="bold" if (index, col) in self.bold else "") for col, cell in enumerate(row)]
            table.add_row(*cells, end_section=index in self.rules_after)
        return table

    def to_markdown(self) -> str:
        lines = ([f"**{self.title}**", ""] if self.title else []) + [
            "| " + " | ".join(_md_cell(c) for c in self.columns) + " |",
            "|" + "|".join("---:" if right else ":---" for right in self.right_aligned()) + "|"]
        lines += ["| " + " | ".join(self._md_cell(index, col, cell) for col, cell in enumerate(row)) + " |"
                  for index, row in enumerate(self.rows)]
        if self.caption:
            lines += ["", self.caption]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buffer.getvalue()

    def to_records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_json(self) -> str:
        bold = [{"row": row, "column": self.columns[col]} for row, col in sorted(self.bold)]
        return json.dumps({"title": self.title, "columns": self.columns, "rows": self.to_records(),
                           **({"caption": self.caption} if self.caption else {}),
                           **({"bold": bold} if bold else {})}, indent=2, ensure_ascii=False) + "\n"

    def render(self, fmt: str) -> str:
        """The table as text in ``fmt`` (md, csv or json)."""
        if fmt not in FORMATS or fmt == "table":
            raise ValueError(f"format must be one of {', '.join(FORMATS[1:])} to render as text, got {fmt!r}")
        return {"md": self.to_markdown, "csv": self.to_csv, "json": self.to_json}[fmt]()

    def print(self, console: Console, fmt: str = "table") -> None:
        """Print in ``fmt``; the terminal table is never cut (see :mod:`medpeft.console`)."""
        if fmt == "table":
            print_renderable(console, self.to_rich())
        else:
            console.out(self.render(fmt), end="", highlight=False)

    def __rich__(self) -> RichTable:
        return self.to_rich()

    def _md_cell(self, row: int, col: int, text: str) -> str:
        text = _md_cell(text)
        return f"**{text}**" if (row, col) in self.bold and text.strip() else text

    def right_aligned(self) -> list[bool]:
        """Numbers right, text left: a column (but the first) is numeric when every cell is."""
        return [index > 0 and bool(self.rows) and all(_NUMERIC.match(row[index]) for row in self.rows)
                for index in range(len(self.columns))]


# digits and what the result tables put beside them: ± std, ↑/↓/= differences, [CI], ≈, †‡ footnotes
_NUMERIC = re.compile(r"^[\s\d.,%±+\-−–\[\]()*↑↓=≈†‡§]*$")


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
