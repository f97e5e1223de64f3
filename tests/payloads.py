"""A pickle payload for the tests that prove medpeft never unpickles what it loads."""
from __future__ import annotations

import pathlib


class Exploit:
    """Unpickled, it writes ``marker``: the trace that a payload ran (the tests also show, as a
    positive control, that plain unpickling does write it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "ran"))
