"""Typed configs that round-trip through YAML/JSON.

Every knob is a dataclass field with a comment saying what it does; library code receives
these objects, never an ``argparse.Namespace``. :func:`from_dict` rejects unknown keys with
the list of valid ones, so a typo in a YAML recipe fails loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def to_dict(config: Any) -> dict:
    """Dataclass -> plain dict of builtins (tuples become lists), ready for YAML/JSON."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], values: dict | None, where: str = "") -> T:
    """Build ``cls`` from a dict, recursing into nested dataclass fields; unknown keys are errors."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in values if key not in fields]
    if unknown:
        label = where or cls.__name__
        hint = difflib.get_close_matches(unknown[0], fields, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{label}: unknown option(s) {unknown}{maybe}; valid: {', '.join(fields)}")
    kwargs = {}
    for key, value in values.items():
        kind = _dataclass_in(hints[key])
        if kind is not None and isinstance(value, dict):
            value = from_dict(kind, value, f"{where or cls.__name__}.{key}")
        elif isinstance(value, list) and _is_tuple(hints[key]):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def _dataclass_in(hint) -> type | None:
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    for candidate in candidates:
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _is_tuple(hint) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    return any(typing.get_origin(arg) is tuple for arg in typing.get_args(hint))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file + rename, so a killed process never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_yaml(path: str | os.PathLike, values: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(values).__name__}")
    return values


def save_json(path: str | os.PathLike, values: dict) -> None:
    atomic_write_text(path, json.dumps(values, indent=2, sort_keys=False) + "\n")
