"""No source module grows past what a reader takes in at once (docs/architecture.md): split by
role before a file passes 400 lines, as the engine, the CLI and the data sources were."""
from __future__ import annotations

from pathlib import Path

import medpeft

LIMIT = 400


def test_no_source_module_is_longer_than_the_limit():
    package = Path(medpeft.__file__).parent
    long = {str(p.relative_to(package)): n for p in package.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > LIMIT}
    assert not long, f"split these by role: {long}"
