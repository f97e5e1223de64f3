"""Generative studies: Dutt et al.'s diffusion table (methods x training-set fraction x seeds) as
a study file, run by the same Optuna engine as the classifier studies.

    name: diffusion-pneumonia
    kind: diffusion                                         # optional: base + judge say so too
    base: {name: cxr-phantom-diffusion-28, config: {...}}   # pretrained once, cached by name
    judge: {name: judge, config: {...}}                     # a classifier run on real target images
    data: {spec: "medmnist:pneumoniamnist", label: PneumoniaMNIST}
    fractions: [0.01, 0.1, 1.0]
    seeds: [0, 1, 2]
    no_adaptation: true                                     # the base model's row (no training)
    methods: [{name: full, label: Full FT}, {name: lora, label: LoRA r=4, options: {rank: 4}}, ...]
    train: {steps: 150, batch_size: 16}                     # every cell; a method's train overrides
    sample: {...}
    score: {images: 150}

Why a study kind of its own rather than new fields in the classifier study file: a diffusion
cell is a :class:`medpeft.diffusion.DiffusionConfig`, not a ``RunConfig``, it has a base model
and a judge to make first, and its report has other numbers. What is shared is the machinery —
storage, claiming, kill-safety, workers, status — so :class:`DiffusionEngine` subclasses the
engine and overrides only what a cell is (how cells are made, trained and summarised), and
``medpeft study run|worker|status|report`` call the same runner functions, which find
:data:`DIFFUSION` from the file (``studies/kinds.py``). Cells never search (no validation score
would choose well: a held-out denoising loss says little about samples), so ``search`` is
always off.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..serialization import from_dict, merge
from ..diffusion import DiffusionConfig, ensure_model
from ..methods import method_config
from ..runtime import RunConfig, RunDir, RunInUse, run_slug
from .engine import POLL, Engine
from .kinds import StudyKind, take_kind
from .spec import MethodEntry, declared_key, read_study_file, study_path

NO_ADAPTATION = "No adaptation"


@dataclass
class ModelStep:
    name: str  # a name for what this step makes (cache name of the base; run folder of the judge)
    config: dict = field(default_factory=dict)  # its config (DiffusionConfig fields; RunConfig fields for the judge)


@dataclass
class DiffusionDataEntry:
    spec: str  # the target dataset spec, e.g. medmnist:pneumoniamnist
    label: str | None = None  # its label in reports (default: the spec)
    data_root: str | None = None  # folder of the data files (relative: from the study file's folder)


@dataclass
class DiffusionStudy:
    name: str  # the study's name (also the Optuna study name in shared storage)
    base: ModelStep  # the pretrained diffusion model every cell adapts (made once, cached by name)
    judge: ModelStep  # the classifier on real target images that scores every cell (trained once)
    data: DiffusionDataEntry  # the target domain
    methods: list[MethodEntry]  # report rows (methods that fit the UNet: `medpeft methods --backbone unet`)
    description: str = ""
    fractions: list[float] = field(default_factory=lambda: [1.0])  # fractions of the target's training images
    seeds: list[int] = field(default_factory=lambda: [0])  # training (and sampling) seeds per cell
    no_adaptation: bool = True  # also score the base model as it is on the target's prompts (a row)
    captions: dict = field(default_factory=dict)  # CaptionConfig fields of every cell
    train: dict = field(default_factory=dict)  # DiffusionTrainConfig fields of every cell
    sample: dict = field(default_factory=dict)  # SampleConfig fields of every cell
    score: dict = field(default_factory=dict)  # ScoreConfig fields of every cell (judge: set by the study)
    folder: str = ""  # set when loaded: the study file's folder

    search = None  # the engine's search stage: never, for diffusion cells

    def __post_init__(self):
        if not self.name or run_slug(self.name) != self.name:
            raise ValueError(f"study name {self.name!r} may hold letters, digits, '.', '_' and '-' only")
        if not self.methods:
            raise ValueError("a study needs at least one method")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds}")
        labels = [m.label or m.name for m in self.methods]
        if len(set(labels)) != len(labels) or NO_ADAPTATION in labels:
            raise ValueError(f"method labels must be distinct and not {NO_ADAPTATION!r}, got {labels}")
        for method in self.methods:  # the name, its options and that it fits the UNet, before any cell runs
            method_config(method.name, method.options, family="unet")


@dataclass(frozen=True)
class DiffusionCell:
    key: str
    config: DiffusionConfig
    dataset: str
    fraction: float
    method: str  # method label (report row)
    seed: int
    variant: dict
    backbone: str = "UNet"
    subset: int | None = None  # no label subsets in diffusion studies (a classifier Cell's field, for shared labels)

    @property
    def group(self) -> str:
        return run_slug(self.dataset, f"f{self.fraction:g}", self.method)

    def record(self) -> dict:
        return {"dataset": self.dataset, "fraction": self.fraction, "label": self.method,
                "method": self.config.method, "seed": self.seed, "variant": dict(self.variant)}


def load_diffusion_study(path: str | Path) -> DiffusionStudy:
    """Read and validate a diffusion study file (every cell's config is built and checked)."""
    path, values = read_study_file(path)
    take_kind(values, path, "diffusion")  # `kind:` is checked, not a DiffusionStudy field
    try:
        study = from_dict(DiffusionStudy, values, where=str(path))
        base_config(study)
        RunConfig.from_dict(study.judge.config)
        diffusion_cells(study, judge="<judge>")
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    return study


def base_config(study: DiffusionStudy) -> DiffusionConfig:
    return DiffusionConfig.from_dict(study.base.config)


def judge_dir(study: DiffusionStudy, work_dir: Path) -> Path:
    """The judge's run folder: named by the study file's judge name and a digest of its config."""
    digest = hashlib.sha256(json.dumps(study.judge.config, sort_keys=True).encode()).hexdigest()[:8]
    return (work_dir / "runs" / f"{run_slug(study.judge.name)}-{digest}").resolve()


def diffusion_cells(study: DiffusionStudy, judge: str) -> list[DiffusionCell]:
    """Every (seed, fraction, method) cell, with the no-adaptation row first in each seed."""
    base = base_config(study).to_dict()
    shared = {"base": study.base.name, "unet": base["unet"], "text": base["text"],
              "captions": study.captions, "sample": study.sample, "score": {**study.score, "judge": judge}}
    entries = ([MethodEntry(name="full", label=NO_ADAPTATION, train={"steps": 0, "min_steps": None,
                                                                      "epochs": 1})]
               if study.no_adaptation else []) + list(study.methods)
    dataset = study.data.label or study.data.spec
    out = []
    for seed in study.seeds:  # seed-major: a study stopped early has whole tables of fewer seeds
        for fraction in [0.0] * study.no_adaptation + list(study.fractions):
            for entry in entries:
                label = entry.label or entry.name
                if (fraction == 0.0) != (label == NO_ADAPTATION):
                    continue  # the base model as it is: once per seed (fraction 0: no target image trained on)
                data = {"specs": [study.data.spec], "data_root": study_path(study.folder, study.data.data_root),
                        "fraction": fraction or 1.0, "img_size": base["data"]["img_size"]}
                values = {**shared, "data": data, "method": entry.name, "method_options": dict(entry.options),
                          "train": {**merge(study.train, entry.train), "seed": seed}}
                config = DiffusionConfig.from_dict(values)
                declared = {"base": dataclasses.asdict(study.base), "judge": study.judge.config,
                            "data": dataclasses.asdict(study.data), "fraction": fraction,
                            "method": {"name": entry.name, "options": entry.options},
                            "train": values["train"], "captions": study.captions, "sample": study.sample,
                            "score": study.score}
                name = run_slug(dataset, f"f{fraction:g}", label, f"s{seed}")
                out.append(DiffusionCell(f"{name}-{declared_key(declared)}", config, dataset, fraction, label,
                                         seed, dict(entry.variant)))
    return out


class DiffusionEngine(Engine):
    """The study engine with diffusion cells: base model and judge first, then the cells."""

    def make_cells(self, study: DiffusionStudy) -> list[DiffusionCell]:
        return diffusion_cells(study, str(judge_dir(study, self.work_dir)))

    def ensure_pretrained(self) -> None:
        """Make the base model (cached by name) and train the judge, once."""
        from ..train import finetune

        waiting = False
        while True:
            try:
                ensure_model(self.study.base.name, base_config(self.study), console=self.console, progress=False)
                judge = RunDir(judge_dir(self.study, self.work_dir))
                if not judge.is_complete():
                    self.console.print(f"training the judge (a classifier on real {self.study.data.spec}) once: "
                                       f"{judge.path}")
                    finetune(RunConfig.from_dict(self.study.judge.config), judge.path, resume=True,
                             console=self.console, progress=False)
                return
            except RunInUse as busy:
                if not waiting:
                    self.console.print(f"waiting: {busy}")
                    waiting = True
                time.sleep(POLL)  # another process of this machine is making it

    def donor(self, cell: DiffusionCell) -> Path | None:
        return None  # diffusion study files have no `reuse`: every cell trains

    def train_cell(self, cell: DiffusionCell, path: Path, on_validation=None) -> dict:
        from ..diffusion import train_diffusion

        return train_diffusion(cell.config, path, resume=True, console=self.console, progress=False)

    def objective(self, metrics: dict, search: bool) -> float:
        return -metrics["scores"]["generated"]["fd"]

    def result_line(self, cell: DiffusionCell, metrics: dict) -> str:
        gen = metrics["scores"]["generated"]
        return (f"FD {gen['fd']:.2f}, precision {gen['precision']:.3f}, recall {gen['recall']:.3f}, "
                f"conditional accuracy {gen['cond_acc']:.3f}")


DIFFUSION = StudyKind(name="diffusion", load=load_diffusion_study, engine=DiffusionEngine)
