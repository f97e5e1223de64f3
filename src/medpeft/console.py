"""The console every medpeft command prints to, and how tables reach it.

User-supplied text (paths, dataset specs, label names, error messages that quote them) is
printed as it is: the console never reads ``[...]`` as rich markup nor ``:name:`` as an emoji
code, so ``data/[archive] csv/m.csv`` and ``csv:ok`` print unchanged and a path holding
``[/b]`` cannot crash it. Styling is applied by passing ``style=`` explicitly.

Tables are printed whole: on a terminal rich may wrap a long cell (``overflow="fold"``, never an
ellipsis), and when the output is a pipe or a file the table is printed at its natural width, so
``medpeft methods | grep adapter-parallel`` finds the name.

Results go to stdout, medpeft's own ``error:`` and ``warning:`` lines to stderr
(:func:`print_error`, :func:`print_warning`: a console that writes to the process's stdout is
given its stderr twin), so ``medpeft eval RUN --format csv > x.csv`` holds only the CSV. Python
warnings are printed the same way, one ``warning:`` line without a source line
(:func:`show_warnings_plainly`).
"""
from __future__ import annotations

import sys
import warnings

from rich.console import Console
from rich.measure import Measurement
from rich.text import Text


def make_console(**kwargs) -> Console:
    """A console that prints text literally (no markup, emoji or highlighting)."""
    return Console(markup=False, emoji=False, highlight=False, soft_wrap=True, **kwargs)


def error_console(console: Console) -> Console:
    """Where ``console``'s errors and warnings go: its stderr twin when it writes to the process's
    stdout (a console given a file of its own, e.g. a test's buffer, keeps it)."""
    if console.stderr or getattr(console, "_file", None) is not None:
        return console
    return make_console(stderr=True, quiet=console.quiet)


def print_error(console: Console, message: str, label: str = "error") -> None:
    error_console(console).print(Text.assemble((f"{label}: ", "bold red"), str(message)))


def print_warning(console: Console, message: str) -> None:
    error_console(console).print(Text.assemble(("warning: ", "bold yellow"), str(message)))


def show_warnings_plainly() -> None:
    """Python warnings (``warnings.warn``) printed as one ``warning: message`` line on stderr, without
    the file, line number and source line Python adds."""
    def show(message, category, filename, lineno, file=None, line=None):
        target = file or sys.stderr
        if target is None:
            return
        try:
            make_console(file=target).print(Text.assemble(("warning: ", "bold yellow"), str(message)))
        except OSError:  # stderr closed: nowhere to warn
            pass

    warnings.showwarning = show


def print_renderable(console: Console, renderable) -> None:
    """Print ``renderable`` (e.g. a rich Table) uncut: at its natural width when not on a terminal."""
    if console.is_terminal:
        console.print(renderable)
        return
    width = Measurement.get(console, console.options.update(width=100_000), renderable).maximum
    narrow = console.width
    console.width = max(width, narrow)  # print() clamps its width= to the console's
    try:
        console.print(renderable, crop=False)
    finally:
        console.width = narrow
