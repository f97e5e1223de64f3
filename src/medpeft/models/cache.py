"""The named local cache of pretrained backbones: ``--checkpoint <name>`` as well as a path.

Layout (docs/architecture.md, "Checkpoints"): ``$MEDPEFT_CACHE/checkpoints/<name>/checkpoint.pth``
plus a ``card.json`` describing how it was made; ``$MEDPEFT_CACHE`` defaults to ``~/.cache/medpeft``.
A diffusion model's folder holds its run's ``config.yaml``, ``metrics.json`` and adapter files.
:func:`publish_files` writes a folder atomically; :func:`refuse_other_config` guards a name
already taken (made once, reused afterwards: :mod:`medpeft.runtime.named_cache`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

CACHE_ENV = "MEDPEFT_CACHE"
CHECKPOINT_FILES = ("checkpoint.pth", "model.safetensors", "checkpoint.safetensors")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/medpeft").expanduser()


def checkpoint_dir(name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"checkpoint name {name!r} may hold letters, digits, '.', '_' and '-' only")
    return cache_root() / "checkpoints" / name


def cached_names() -> list[str]:
    folder = cache_root() / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if _checkpoint_file(p) is not None)


def _checkpoint_file(folder: Path) -> Path | None:
    for file_name in CHECKPOINT_FILES:
        if (folder / file_name).is_file():
            return folder / file_name
    return None


def resolve_checkpoint(reference: str | os.PathLike) -> Path:
    """A file path as given, or the file of a cached checkpoint named ``reference``."""
    path = Path(reference).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and _checkpoint_file(path) is not None:
        return _checkpoint_file(path)
    if _NAME.match(str(reference)):
        found = _checkpoint_file(checkpoint_dir(str(reference)))
        if found is not None:
            return found
    names = ", ".join(cached_names()) or "none yet (make one with `medpeft pretrain ... --name NAME`)"
    raise FileNotFoundError(f"checkpoint {str(reference)!r} is neither a file nor a cached name; "
                            f"cached in {cache_root() / 'checkpoints'}: {names}")


def read_card(checkpoint: Path) -> dict:
    """The JSON card beside a checkpoint, or {} when it has none."""
    for candidate in (checkpoint.with_suffix(".json"), checkpoint.parent / "card.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return {}


def publish_files(name: str, files: dict[str, Path]) -> Path:
    """Copy ``files`` (name in the cache -> file to copy) into the cached folder ``name``, replacing
    what it held. The files are copied beside it first and then moved in, so a half-copied set
    never stands under the name, and a failed copy (a full disk) removes the half-copied folder and
    leaves what the name held."""
    target = checkpoint_dir(name)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for file_name, source in files.items():
            shutil.copy2(source, tmp / file_name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


class CheckpointConflict(ValueError):
    """A named checkpoint exists but was made with another config: replacing it would silently
    change what every run fine-tuned from that name (in any study) was built on."""


def refuse_other_config(name: str, saved: dict | None, wanted: dict) -> None:
    """Raise :class:`CheckpointConflict` naming the differing fields when the cached checkpoint
    ``name`` (``saved``: its config as today's code reads it, None if unreadable) was not made
    with ``wanted``. Called before anything would overwrite a published checkpoint."""
    if saved == wanted:
        return
    if saved is None:
        what = "with a config this medpeft cannot read"
    else:
        old, new = _flat(saved), _flat(wanted)
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        shown = "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} here" for k in keys[:4])
        what = f"with another config ({shown}{'; ...' if len(keys) > 4 else ''})"
    raise CheckpointConflict(
        f"the cached checkpoint {name!r} ({checkpoint_dir(name)}) was made {what}. Replacing it would "
        "change what the runs already fine-tuned from it were built on, so medpeft does not: give this "
        "step another name, or delete that folder to remake it under this one")


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
