"""A self-contained HTML page for a study report: CSS inline, plots embedded as base64 PNG data
URIs, no scripts and no external assets, so the one file opens offline and can be mailed.
Every piece of text that comes from users (titles, labels, dataset names, the command) is
escaped; bold table cells (the best of a column) become ``<strong>``.
"""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from ..table import Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1400px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; }
pre { background: #f4f4f6; padding: .7rem 1rem; overflow-x: auto; border-radius: 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: .5rem 0; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .4rem; }
th, td { padding: .3rem .65rem; border-bottom: 1px solid #e3e3e8; white-space: nowrap; }
th { background: #f4f4f6; border-bottom: 2px solid #b9b9c3; }
td.num, th.num { text-align: right; } td.text, th.text { text-align: left; }
tr.rule td { border-bottom: 2px solid #8e8e99; }
.notes { color: #55555f; font-size: .9rem; margin-top: .3rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #55555f; font-size: .9rem; }
"""


def table_html(table: Table) -> str:
    """``table`` as an HTML table (title as caption) with its caption lines as notes below."""
    align = ["num" if right else "text" for right in table.right_aligned()]
    head = "".join(f'<th class="{a}">{escape(c)}</th>' for a, c in zip(align, table.columns))
    body = []
    for index, row in enumerate(table.rows):
        cells = "".join(f'<td class="{a}">{_cell(text, (index, col) in table.bold)}</td>'
                        for col, (a, text) in enumerate(zip(align, row)))
        body.append(f'<tr{" class=rule" if index in table.rules_after else ""}>{cells}</tr>')
    notes = "<br>".join(escape(line) for line in table.caption.splitlines())
    return ('<div class="scroll"><table>'
            + (f"<caption>{escape(table.title)}</caption>" if table.title else "")
            + f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            + (f'<p class="notes">{notes}</p>' if notes else ""))


def _cell(text: str, bold: bool) -> str:
    return f"<strong>{escape(text)}</strong>" if bold and text.strip() else escape(text)


def image_html(path: str | Path, caption: str) -> str:
    """A PNG file embedded in the page as a base64 data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def page_html(title: str, *, command: str, note: str = "", tables=(), images=(), files=()) -> str:
    """The whole page: title, note, the command that made it, tables, plots (path, caption), and
    the names of the report's other files."""
    parts = [f"<h1>{escape(title)}</h1>"]
    if note:
        parts.append(f"<p>{escape(note)}</p>")
    parts.append(f"<p>Made by:</p><pre><code>{escape(command)}</code></pre>")
    parts += ["<h2>Tables</h2>"] + [table_html(table) for table in tables]
    if images:
        parts += ["<h2>Plots</h2>"] + [image_html(path, caption) for path, caption in images]
    if files:
        parts.append("<p class=notes>Files beside this page: "
                     + ", ".join(f"<code>{escape(name)}</code>" for name in files) + ".</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
