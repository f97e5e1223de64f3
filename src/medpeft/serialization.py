"""Typed configs that round-trip through YAML/JSON.

Every knob is a dataclass field with a comment saying what it does; library code receives
these objects, never an ``argparse.Namespace``. :func:`from_dict` builds a config from a plain
dict (a YAML recipe, merged command-line flags) and checks it field by field: an unknown key
is an error listing the valid ones (with a close match), and a value of the wrong type
(``epochs: "many"``, ``img_size: "28"``, ``epochs: 1.7``, ``data: 5``) is an error naming the
field, what it expected and what it got — before any dataclass sees it. A number must be finite
(``nan``, ``inf`` are refused), and a YAML mapping that names a key twice is an error naming it
(:class:`UniqueKeyLoader`: every YAML medpeft reads goes through :func:`parse_yaml`).

Every JSON file medpeft writes is strict JSON (:func:`dumps_json`): NaN and infinities become
``null``; ``runtime.rundir.RunDir.load_metrics`` reads a metric's ``null`` back as NaN. Files are
written atomically (temporary file + rename, the temporary file removed when the write fails),
and a write that fails — disk full, read-only, a path through a file — is an ``OSError`` naming
the path (:class:`WriteFailed` for the errors of libraries that raise something else).
"""
from __future__ import annotations

import dataclasses
import difflib
import errno
import functools
import json
import math
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
    """Build ``cls`` from a dict, recursing into nested dataclass fields and checking types."""
    label = where or cls.__name__
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{label}: expected a mapping of options, got {_shown(values)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in values if key not in fields]
    if unknown:
        hint = difflib.get_close_matches(str(unknown[0]), fields, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"{label}: unknown option(s) {unknown}{maybe}; valid: {', '.join(fields) or 'none'}")
    kwargs = {key: coerce(value, hints[key], f"{label}.{key}") for key, value in values.items()}
    return cls(**kwargs)


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (and converted where lossless: int -> float,
    list -> tuple, 2.0 -> 2); a mismatch is a ``ValueError`` naming ``where``."""
    if hint is Any:
        return value
    options = _union_members(hint)
    if options is not None:
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(value, option, where)
            except ValueError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else ValueError(
            f"{where}: expected {_describe(hint)}, got {_shown(value)}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        items = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, (str, dict)) or value is None:
            raise ValueError(f"{where}: expected a list of {_describe(item)}, got {_shown(value)}")
        return tuple(coerce(v, item, f"{where}[{i}]") for i, v in enumerate(items))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping such as {{depth: 4}}, got {_shown(value)}")
        return value
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {_shown(value)}")
        item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true or false, got {_shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{where}: expected a whole number, got {_shown(value)}"
                         + (" (write it without quotes)" if _is_number_text(value) else ""))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif _is_number_text(value):  # YAML 1.1 reads 1e-3 (no dot) as a string
            number = float(value)
        else:
            raise ValueError(f"{where}: expected a number, got {_shown(value)}")
        if not math.isfinite(number):
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected text, got {_shown(value)}")
    return value  # other annotations are the dataclass's own business


def _union_members(hint) -> tuple | None:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return None


def _is_number_text(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _describe(hint) -> str:
    options = _union_members(hint)
    if options is not None:
        return " or ".join(_describe(o) for o in options)
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false",
             dict: "a mapping", type(None): "null"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is tuple:
        return "a list"
    if dataclasses.is_dataclass(hint):
        return "a mapping of options"
    return getattr(hint, "__name__", str(hint))


def _shown(value) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update (override wins), without mutating either."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class WriteFailed(OSError):
    """A file could not be written, raised for a library's own error (safetensors' ``SafetensorError``,
    torch's ``RuntimeError`` of a short write) so that every failed write is an ``OSError`` with
    the path in ``filename``."""


def atomic_write(path: str | os.PathLike, write, suffix: str = ".tmp") -> Path:
    """``write(tmp)`` to a uniquely named temporary file beside ``path``, then renamed to ``path``: a killed process
    never leaves half a file, and a failed write leaves no temporary file and ``path`` as it was.
    An error of the writer that is not an ``OSError`` (a library's report of a short write) becomes
    :class:`WriteFailed`; ``suffix`` ends the temporary name (``.tmp.npz``: writers that add one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)  # unique: writers may race
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None:  # e.g. a flush or fsync on a full disk: name the file
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise
    except Exception as err:
        tmp.unlink(missing_ok=True)
        if type(err).__name__ == "SafetensorError" or _is_short_write(err):  # safetensors, torch: a failed write
            raise WriteFailed(_errno_in(str(err)), _reason(str(err)), str(path)) from None
        raise
    except BaseException:  # Ctrl-C mid-write
        tmp.unlink(missing_ok=True)
        raise
    return path


def _is_short_write(err: Exception) -> bool:
    """torch's zip writer on a full or failing disk (``PytorchStreamWriter failed writing file``,
    ``unexpected pos``), not a ``RuntimeError`` that refuses the data itself."""
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        mark in text for mark in ("unexpected pos", "failed writing", "no space left", "inline_container"))


def _errno_in(text: str) -> int:
    lowered = text.lower()
    if "no space left" in lowered or "unexpected pos" in lowered:  # torch's zip writer on a full disk
        return errno.ENOSPC
    if "read-only" in lowered:
        return errno.EROFS
    return errno.EIO


def _reason(text: str) -> str:
    lowered = text.lower()
    if "no space left" in lowered or "unexpected pos" in lowered:
        return "No space left on device"
    return text.splitlines()[0][:160] if text else "write failed"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file + rename, so a killed process never leaves half a file."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def atomic_save_tensors(path: str | os.PathLike, tensors: dict) -> None:
    """A safetensors file (``{"format": "pt"}`` metadata, as torch-side readers expect) written via
    a temporary file + rename; the temporary file is removed if the write fails."""
    from safetensors.torch import save_file  # torch is imported only by callers that write tensors

    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


def save_yaml(path: str | os.PathLike, values: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming a key twice (YAML itself keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # << merges may repeat keys on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} twice (first at line {first.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str):
    """YAML text -> Python values, like ``yaml.safe_load`` but a repeated key is an error."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def load_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        values = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a YAML file (not text)") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(values).__name__}")
    return values


def load_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """A JSON object from ``path``; a missing, unreadable or malformed file is an error naming it."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid {what} ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object in the {what}, got {type(values).__name__}")
    return values


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON ``null``), recursively
    through dicts, lists and tuples; numpy scalars become Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / torch scalar
        return strict_json(value.item())
    return value


def dumps_json(value: Any, **kwargs) -> str:
    """Strict JSON text (``allow_nan=False``): NaN and infinities written as ``null``."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def save_json(path: str | os.PathLike, values: dict) -> None:
    atomic_write_text(path, dumps_json(values, indent=2, sort_keys=False) + "\n")


def field_help(cls, name: str) -> str:
    """The one-line doc of a config field: the trailing ``# comment`` of its line in the class
    source (every field has one), searched through the class's bases."""
    for klass in getattr(cls, "__mro__", (cls,)):
        comment = _field_comments(klass).get(name)
        if comment:
            return comment
    return ""


@functools.lru_cache(maxsize=None)
def _field_comments(klass) -> dict[str, str]:
    """field name -> trailing comment, read once per class (reading source is slow)."""
    import inspect

    try:
        source = inspect.getsource(klass)
    except (OSError, TypeError):
        return {}
    comments = {}
    for line in source.splitlines():
        stripped = line.strip()
        head, sep, comment = stripped.partition("#")
        if sep and ":" in head:
            field = head.split(":", 1)[0].strip()
            if field.isidentifier():
                comments.setdefault(field, comment.strip())
    return comments
