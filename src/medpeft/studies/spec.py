"""Study files: a comparative study (datasets x label fractions x backbones x methods x seeds),
as one YAML file validated like every config, expanded into cells.

    name: demo
    data:
      - {spec: "medmnist:pneumoniamnist", label: PneumoniaMNIST}
    fractions: [0.01, 0.1, 1.0]
    seeds: [0]
    backbones:
      - label: ViT-Tiny (MAE)
        backbone: {name: vit_tiny, img_size: 28, patch_size: 4}
        pretrain: {name: demo-mae, train: {epochs: 8}}     # the cells use its checkpoint
    methods:
      - {name: fft, label: FFT}
      - {name: lora, label: LoRA r=8, options: {rank: 8}}
    train: {epochs: 10, min_steps: 200}                   # every cell; methods/backbones override
    search: {trials: 8, space: {lora: {lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}}
    report: {baseline: FFT, anchors: [...]}               # baseline_backbone: a backbone label

``subsets: 10`` (or ``{0.01: 10, 0.1: 10}``) trains every seed on K label subsets of each
fraction below 1 (``studies/subsets.py``); the cells then name their subset.

A slice of a big study can name it in ``extends`` and give only the keys that differ
(:func:`read_study_file`); ``kind: classifier`` may say what it is (``studies/kinds.py``). An
unknown key, method, option or backbone fails when the file is loaded, with the valid names; so
do a search range with a value its trials could not run, a report baseline that is no row, a
report baseline backbone that is no backbone label, and a file that is empty or no mapping
(``studies/checks.py``).
Relative paths (``data_root``, ``checkpoint``) are read from the study file's folder. Each cell
is one ordinary fine-tuning run (:class:`medpeft.runtime.RunConfig`); its key is its readable
name plus a digest of its config, so editing the study file gives new cells and never mixes
old results into new ones.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..serialization import from_dict, merge, to_dict
from ..methods import METHODS
from ..models import BackboneConfig
from ..pretrain import PretrainConfig
from ..runtime import DataConfig, RunConfig, TrainConfig, run_slug
from .checks import check_baseline, check_baseline_backbone, check_required, read_study_values, required_fields
from .kinds import take_kind
from .subsets import subset_counts, subset_indices
# the search part of a study file; importers of these names from here keep working
from .searchconfig import (PRUNERS, SAMPLERS, SEARCHABLE_TRAIN, SearchConfig, check_search,  # noqa: F401
                           check_space_values, distribution, search_space)


@dataclass
class DataEntry:
    spec: str  # dataset spec, e.g. medmnist:pneumoniamnist
    label: str | None = None  # column label in reports (default: the spec)
    data_root: str | None = None  # folder of the data files (relative: from the study file's folder)
    augment: str = "none"  # training augmentation: none | light | flip | randaug (MED-PEFT's recipe)
    skip_bad: bool = False  # leave out missing/corrupt items with a warning
    val_fraction: str | float | None = field(default=None, metadata={"added_later": True})  # DataConfig's: unset | (0, 1] | match
    val_min_per_class: int = field(default=5, metadata={"added_later": True})  # its floor per class


@dataclass
class PretrainStep:
    name: str  # cached checkpoint name the cells fine-tune from (made once, reused)
    data: dict = field(default_factory=dict)  # PretrainDataConfig fields (default: the study's first dataset)
    # mae (ViTs) | simclr (contrastive; any backbone, e.g. the ResNets of Dutt et al.)
    objective: str = field(default="mae", metadata={"added_later": True})
    mae: dict = field(default_factory=dict)  # MAEConfig fields
    simclr: dict = field(default_factory=dict, metadata={"added_later": True})  # SimCLRConfig fields
    train: dict = field(default_factory=dict)  # PretrainTrainConfig fields


@dataclass
class BackboneEntry:
    label: str | None = None  # row label suffix in reports (default: the backbone name)
    backbone: dict = field(default_factory=dict)  # BackboneConfig fields
    pretrain: PretrainStep | None = None  # MAE-pretrain this backbone first; the cells use the result
    train: dict = field(default_factory=dict)  # TrainConfig overrides for cells on this backbone
    methods: list[str] | None = None  # only these method labels on this backbone (default: all that fit)
    variant: dict = field(default_factory=dict)  # ablation axis values, e.g. {pretrain_epochs: 13}


@dataclass
class MethodEntry:
    name: str  # registered method (see `medpeft methods`)
    label: str | None = None  # row label in reports (default: the name)
    options: dict = field(default_factory=dict)  # the method's own options, e.g. {rank: 8}
    train: dict = field(default_factory=dict)  # TrainConfig overrides for this method
    variant: dict = field(default_factory=dict)  # ablation axis values, e.g. {rank: 8}


@dataclass
class Anchor:
    label: str  # e.g. "MedMNIST v2 ResNet-18 (published)"
    dataset: str  # the data label it belongs to
    value: float  # in [0, 1]
    fraction: float = 1.0
    metric: str = "auroc"  # auroc | f1 | acc
    source: str = ""  # where the figure is published


@dataclass
class ReportConfig:
    title: str | None = None  # default: the study's name and description
    baseline: str | None = "fft"  # row (method label or name) the ↑/↓ differences refer to
    baseline_backbone: str | None = None  # backbone label: pair every method with itself on it, or with its one row (None: no table)
    anchors: list[Anchor] = field(default_factory=list)  # published figures printed beside ours


@dataclass
class StudyConfig:
    name: str  # the study's name (also the Optuna study name in shared storage)
    data: list[DataEntry]  # datasets (report columns, with the fractions)
    methods: list[MethodEntry]  # report rows
    description: str = ""
    fractions: list[float] = field(default_factory=lambda: [1.0])  # label fractions
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds per cell
    vary_subset: bool = False  # each seed also draws its own label subset (fraction_seed = seed)
    subsets: int | dict | None = None  # label subsets per fraction < 1: K or {fraction: K} (studies/subsets.py)
    backbones: list[BackboneEntry] = field(default_factory=lambda: [BackboneEntry()])
    train: dict = field(default_factory=dict)  # TrainConfig defaults of every cell
    search: SearchConfig | None = None  # tune each cell before its seeds (studies/searchconfig.py)
    report: ReportConfig = field(default_factory=ReportConfig)
    # folders of other studies (relative: from this file's folder) whose finished runs with the
    # same run config are copied (hard links) instead of trained again
    reuse: list[str] = field(default_factory=list)
    folder: str = ""  # set when loaded: the study file's folder (relative paths start here)

    def __post_init__(self):
        if not self.data or not self.methods:
            raise ValueError("a study needs at least one data entry and one method")
        if not self.name or run_slug(self.name) != self.name:
            raise ValueError(f"study name {self.name!r} may hold letters, digits, '.', '_' and '-' only")
        for fraction in self.fractions:
            DataConfig(fraction=fraction)  # validates
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        subset_counts(self.subsets, self.fractions, self.vary_subset)  # validates
        _unique([m.label or m.name for m in self.methods], "method label")
        _unique([b.label or b.backbone.get("name") or "" for b in self.backbones], "backbone label")
        _unique([d.label or d.spec for d in self.data], "data label")


def _unique(labels: list[str], what: str) -> None:
    seen = set()
    for label in labels:
        if label in seen:
            raise ValueError(f"two entries share the {what} {label!r}; give each a distinct label")
        seen.add(label)


@dataclass(frozen=True)
class Cell:
    """One run of the study: the run config plus where it sits in the report."""

    key: str  # readable name + digest of the config: identifies the cell in storage
    config: RunConfig
    dataset: str
    fraction: float
    method: str  # method label (report row)
    backbone: str  # backbone label
    seed: int
    variant: dict
    pretrain: PretrainConfig | None = None
    pretrain_name: str | None = None
    declared: dict = field(default_factory=dict, compare=False)  # what the study file says (the key's source)
    subset: int | None = None  # label subset index (its fraction_seed); None: the study's one subset

    @property
    def group(self) -> str:
        """The cell without its seed: what a search tunes and the seeds repeat."""
        return run_slug(self.dataset, f"f{self.fraction:g}", self.backbone, self.method)

    def record(self) -> dict:
        """The cell's part of its result record (``subset`` only when the study draws subsets)."""
        return {"dataset": self.dataset, "fraction": self.fraction, "label": self.method,
                "method": self.config.method, "backbone": self.backbone, "seed": self.seed,
                **({} if self.subset is None else {"subset": self.subset}), "variant": dict(self.variant)}


def read_study_file(path: str | Path) -> tuple[Path, dict]:
    """A study file's path (a folder means its study.yaml) and its values, with ``folder`` set.

    ``extends: <study file or folder>`` (relative: from this file's folder) starts from another
    study file's values; each top-level key given here replaces that file's key whole (a slice of
    a big study names only what differs: ``name``, ``data``, ``fractions``). Relative paths are
    then read from this file's folder."""
    path = _study_path(Path(path))
    values = _extended(path, [])
    values["folder"] = str(path.resolve().parent)
    return path, values


def _study_path(path: Path) -> Path:
    return path / "study.yaml" if path.is_dir() else path


def _extended(path: Path, seen: list[Path]) -> dict:
    if path.resolve() in seen:
        raise ValueError(f"{seen[0]}: study files extend each other: "
                         f"{' -> '.join(str(p) for p in [*seen, path.resolve()])}")
    values = read_study_values(path)
    if "extends" not in values:
        return values
    base = values.pop("extends")
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: extends must name a study file or folder, got {base!r}")
    base_path = _study_path(path.resolve().parent / base)
    if not base_path.is_file():
        raise ValueError(f"{path}: extends {base!r}, which is not a study file ({base_path} does not exist)")
    return {**_extended(base_path, [*seen, path.resolve()]), **values}


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file (its shape and required keys, every entry, method option, cell
    config, the report's baseline and every value its search can draw: ``studies/checks.py``,
    ``searchconfig.check_space_values``)."""
    path, values = read_study_file(path)
    take_kind(values, path, "classifier")  # `kind:` (studies/kinds.py) is checked, not a StudyConfig field
    check_required(values, path, required_fields(StudyConfig))
    try:
        config = from_dict(StudyConfig, values, where=str(path))
        check_baseline(config, values)
        grid = cells(config)  # every cell's config is built and checked here
        check_baseline_backbone(config, [cell.backbone for cell in grid])
        check_search(config)
        check_space_values(config, grid, with_params)  # every bound through the checks its trials meet
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    return config


def study_path(folder: str, value: str | None) -> str | None:
    """A path from the study file: relative to its folder when that file or folder exists there."""
    if value is None or Path(value).is_absolute():
        return value
    candidate = Path(folder) / value
    return str(candidate.resolve()) if candidate.exists() else value


def pretrain_config(study: StudyConfig, entry: BackboneEntry) -> PretrainConfig:
    step = entry.pretrain
    data = {"specs": [study.data[0].spec], "data_root": study_path(study.folder, study.data[0].data_root),
            **step.data}
    backbone = {k: v for k, v in entry.backbone.items() if k != "checkpoint"}
    return PretrainConfig.from_dict({"data": data, "backbone": {**backbone, "drop_path": 0.0},
                                     "objective": step.objective, "mae": step.mae, "simclr": step.simclr,
                                     "train": step.train})


def cells(study: StudyConfig) -> list[Cell]:
    """Every (dataset, fraction, backbone, method, seed[, label subset]) run, in report order."""
    out = []
    counts = subset_counts(study.subsets, study.fractions, study.vary_subset)
    for entry in study.backbones:
        known = {m.label or m.name for m in study.methods}
        unknown = set(entry.methods or ()) - known
        if unknown:
            raise ValueError(f"backbone {entry.label!r}: methods {sorted(unknown)} are not in the study "
                             f"(its method labels: {', '.join(sorted(known))})")
        pretrain = pretrain_config(study, entry) if entry.pretrain else None
        backbone_values = dict(entry.backbone)
        if entry.pretrain:
            backbone_values["checkpoint"] = entry.pretrain.name
        elif backbone_values.get("checkpoint"):
            backbone_values["checkpoint"] = study_path(study.folder, backbone_values["checkpoint"])
        backbone = from_dict(BackboneConfig, backbone_values, where=f"backbone {entry.label or ''}".strip())
        backbone_label = entry.label or backbone.name or "vit_small"
        family = backbone.spec.family
        for data in study.data:
            for fraction in study.fractions:
                for method in study.methods:
                    label = method.label or method.name
                    if entry.methods is not None and label not in entry.methods:
                        continue
                    if family not in METHODS.get(method.name).families:
                        continue
                    for seed in study.seeds:
                        for subset in subset_indices(counts[float(fraction)]):
                            out.append(_cell(study, data, fraction, entry, backbone, backbone_label, method,
                                             label, seed, pretrain, subset))
    if not out:
        raise ValueError("the study has no cells (no method fits any backbone)")
    return out


def _cell(study, data, fraction, entry, backbone, backbone_label, method, label, seed, pretrain,
          subset: int | None = None) -> Cell:
    train = merge(merge(study.train, entry.train), method.train)
    train = {**train, "seed": seed}
    fraction_seed = subset if subset is not None else seed if study.vary_subset else 0
    config = RunConfig(
        data=DataConfig(spec=data.spec, data_root=study_path(study.folder, data.data_root), fraction=fraction,
                        fraction_seed=fraction_seed, skip_bad=data.skip_bad, augment=data.augment,
                        val_fraction=data.val_fraction, val_min_per_class=data.val_min_per_class),
        backbone=backbone, method=method.name, method_options=dict(method.options),
        train=from_dict(TrainConfig, train, where=f"train of {label} on {backbone_label}"))
    dataset = data.label or data.spec
    variant = {**entry.variant, **method.variant}
    declared = {"data": _declared(data), "fraction": fraction, "vary_subset": study.vary_subset,
                "backbone": {"backbone": entry.backbone, "pretrain": _declared(entry.pretrain) if entry.pretrain else None},
                "method": {"name": method.name, "options": method.options}, "train": train,
                **({} if subset is None else {"subset": subset})}  # no subsets: the keys of before
    name = run_slug(dataset, f"f{fraction:g}", backbone_label, label, f"s{seed}",
                    *(() if subset is None else (f"sub{subset}",)))
    return Cell(key=f"{name}-{declared_key(declared)}", config=config, dataset=dataset, fraction=fraction,
                method=label, backbone=backbone_label, seed=seed, variant=variant, pretrain=pretrain,
                pretrain_name=entry.pretrain.name if entry.pretrain else None, declared=declared, subset=subset)


def _declared(entry) -> dict:
    """``to_dict(entry)`` for a cell key, without the fields marked ``added_later`` while they hold
    their defaults: adding a field to the study file's schema must not rename existing cells."""
    values = to_dict(entry)
    for spec in dataclasses.fields(entry):
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        if spec.metadata.get("added_later") and values[spec.name] == default:
            del values[spec.name]
    return values


def declared_key(declared: dict) -> str:
    """8 hex digits of what the study file declares for a cell. Editing the file gives new cells;
    a medpeft upgrade that adds an option with a default does not (each run's config.yaml still
    records every setting it used)."""
    return hashlib.sha256(json.dumps(declared, sort_keys=True, default=str).encode()).hexdigest()[:8]


def study_dict(study: StudyConfig) -> dict:
    values = to_dict(study)
    values.pop("folder", None)
    return values


def with_params(cell: Cell, params: dict) -> Cell:
    """``cell`` with searched values applied: TrainConfig fields or the method's own options."""
    train, options = {}, {}
    option_names = {f.name for f in dataclasses.fields(cell.config.method_class.config_class)}
    for name, value in params.items():
        if name in SEARCHABLE_TRAIN:
            train[name] = value
        elif name in option_names:
            options[name] = value
        else:
            raise ValueError(f"cannot apply searched parameter {name!r} to {cell.method}")
    config = cell.config
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, **train),
        method_options=dataclasses.replace(config.method_options, **options))
    config = RunConfig.from_dict(config.to_dict())  # re-validated
    declared = {**cell.declared, "params": params}
    return dataclasses.replace(cell, config=config, declared=declared,
                               key=cell.key.rsplit("-", 1)[0] + "-" + declared_key(declared))
