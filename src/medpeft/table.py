"""One table type for everything medpeft prints: built once as plain rows, rendered as a
terminal table, Markdown, CSV or JSON (``--format table|md|csv|json``), so the terminal,
``table.md`` and a program reading the CSV can never disagree.
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

from .console import print_renderable

FORMATS = ("table", "md", "csv", "json")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    rules_after: set[int] = field(default_factory=set)  # row indices followed by a separator
    caption: str = ""

    def add_row(self, *cells, rule: bool = False) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])
        if rule:
            self.rules_after.add(len(self.rows) - 1)

    def to_rich(self) -> RichTable:
        table = RichTable(title=self.title or None, caption=self.caption or None, box=box.SQUARE_DOUBLE_HEAD)
        for column, right in zip(self.columns, self._right_aligned()):
            table.add_column(column, justify="right" if right else "left", overflow="fold")
        for index, row in enumerate(self.rows):
            table.add_row(*row, end_section=index in self.rules_after)
        return table

    def to_markdown(self) -> str:
        lines = ([f"**{self.title}**", ""] if self.title else []) + [
            "| " + " | ".join(_md_cell(c) for c in self.columns) + " |",
            "|" + "|".join("---:" if right else ":---" for right in self._right_aligned()) + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in self.rows]
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
        return json.dumps({"title": self.title, "columns": self.columns, "rows": self.to_records(),
                           **({"caption": self.caption} if self.caption else {})}, indent=2,
                          ensure_ascii=False) + "\n"

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

    def _right_aligned(self) -> list[bool]:
        """Numbers right, text left: a column (but the first) is numeric when every cell is."""
        return [index > 0 and bool(self.rows) and all(_NUMERIC.match(row[index]) for row in self.rows)
                for index in range(len(self.columns))]


_NUMERIC = re.compile(r"^[\s\d.,%±+\-−–\[\]()*↑↓]*$")


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
