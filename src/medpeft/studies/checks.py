"""Load-time checks of a study file that no dataclass of it can make (issue 27): the file's top
level is a YAML mapping (:func:`read_study_values`, for every kind of study), a classifier study
file has the keys it needs (:func:`check_required`), the report's baseline is a row of the
study (:func:`check_baseline`) and its baseline backbone one of its backbones
(:func:`check_baseline_backbone`). ``spec.load_study`` calls them; the checks of a search space
against the cells that will run it are ``searchconfig.check_space_values``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from ..serialization import load_yaml

SHAPE = ("a study file is a YAML mapping with at least name, data and methods (most also give backbones, "
         "fractions, seeds and train; see docs/studies.md)")


def read_study_values(path: Path) -> dict:
    """The values of one study file (``load_yaml``'s); a file whose top level is no mapping (a
    list, a string) or that is no text is a ValueError of one sentence naming the file."""
    try:
        return load_yaml(path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; {SHAPE}") from None
    except ValueError:
        top = _top_level(path)
        if top is not None:
            raise ValueError(f"{path}: {SHAPE}; this one is {top}") from None
        raise


def _top_level(path: Path) -> str | None:
    """What the file's top level is when it is YAML but no mapping (None: a mapping, or no YAML)."""
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError, OSError):
        return None
    if values is None or isinstance(values, dict):
        return None
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(values), f"a {type(values).__name__}")


def required_fields(cls) -> list[str]:
    """The fields of dataclass ``cls`` without a default."""
    return [f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def check_required(values: dict, path: Path, required: list[str]) -> None:
    """The file's values (``folder`` aside) hold every key in ``required``; else one sentence
    saying what a study file is and what this one lacks."""
    given = set(values) - {"folder"}
    if not given:
        raise ValueError(f"{path}: {SHAPE}; this one is empty")
    missing = [name for name in required if name not in given]
    if missing:
        raise ValueError(f"{path}: {SHAPE}; this one has no {', '.join(missing)}")


def check_baseline(study, values: dict) -> None:
    """A ``report.baseline`` the file gives is a row of the study: a method label, or a method
    name (the report takes the first row of that method). Without ``report.baseline`` the default
    (``fft``) may be absent: the report then shows no differences and says so."""
    report = values.get("report")
    if not isinstance(report, dict) or report.get("baseline") is None:
        return
    baseline = study.report.baseline
    labels = [m.label or m.name for m in study.methods]
    names = list(dict.fromkeys(m.name for m in study.methods))
    if baseline not in labels and baseline not in names:
        raise ValueError(f"report.baseline {baseline!r} is no row of the study; give one of its method labels "
                         f"({', '.join(labels)}) or method names ({', '.join(names)})")


def check_baseline_backbone(study, labels: list[str]) -> None:
    """A ``report.baseline_backbone`` the file gives is the label of one of the study's backbones
    (``labels``: the backbone labels of its cells, as the report's rows name them)."""
    wanted = study.report.baseline_backbone
    labels = list(dict.fromkeys(labels))
    if wanted is not None and wanted not in labels:
        raise ValueError(f"report.baseline_backbone {wanted!r} is no backbone of the study; give one of its "
                         f"backbone labels ({', '.join(labels)})")
