"""Parsing of the URI-like dataset specs used on the command line.

``scheme[:target][?key=value&key=value]``, for example ``synthetic-cxr?n=500&size=64``,
``medmnist:chestmnist@64``, ``splits:/data/NIH?root=/images``, ``csv:/data/ham.csv?label=dx``.
Option values are taken literally (a ``+`` stays a ``+``, so regexes work), except that ``%XX``
escapes are decoded: write ``&`` inside a value as ``%26`` and ``%`` as ``%25``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

DATA_ROOT_ENV = "MEDPEFT_DATA"


@dataclass(frozen=True)
class DataSpec:
    scheme: str
    target: str = ""
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def __str__(self) -> str:
        return self.text


def parse_spec(text: str) -> DataSpec:
    if not text or not text.strip():
        raise ValueError("empty dataset spec; try 'synthetic-cxr' or 'medmnist:pneumoniamnist'")
    text = text.strip()
    body, _, query = text.partition("?")
    scheme, sep, target = body.partition(":")
    if not sep:
        scheme, target = body, ""
    # not form encoding: a "+" is a plus (regexes, file names), not a space; %XX still decodes
    query = query.replace("+", "%2B")
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    return DataSpec(scheme=scheme.strip().lower(), target=target.strip(), options=options, text=text)


def resolve_data_root(explicit: str | os.PathLike | None, default: str | os.PathLike | None) -> Path | None:
    """``--data-root`` wins, then ``$MEDPEFT_DATA``, then the source's own default."""
    for candidate in (explicit, os.environ.get(DATA_ROOT_ENV) or None, default):
        if candidate:
            return Path(candidate).expanduser()
    return None


def take_options(spec: DataSpec, allowed: dict[str, type], defaults: dict | None = None) -> dict:
    """Typed options of a spec; an unknown key or a bad value is an error naming the valid keys."""
    values = dict(defaults or {})
    for key, raw in spec.options.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"{spec.text}: unknown option {key!r} for {spec.scheme} (valid: {valid})")
        kind = allowed[key]
        try:
            values[key] = _convert(raw, kind)
        except ValueError:
            raise ValueError(f"{spec.text}: option {key}={raw!r} is not a valid {kind.__name__}") from None
    return values


def _convert(raw: str, kind: type):
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on", ""):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(raw)
    return kind(raw)
