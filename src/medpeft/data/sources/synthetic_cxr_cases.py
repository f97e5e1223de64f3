"""The patients of ``synthetic-cxr``: what decides one image, drawn from its own random stream.

:func:`sample_case` draws one patient from ``case_rng(seed, split, index)`` =
``default_rng([seed, split, index])``, so an image depends only on (seed, split, index, size):
the first k images of a split do not depend on ``n``, and the three splits never share a
stream. A :class:`Case` holds the anatomy (thorax and lung size, diaphragm height, heart width
by the cardiothoracic ratio, ribs, markings), the pose, the exposure and noise, and the
findings (:data:`FINDINGS`) with their conspicuity; :mod:`.synthetic_cxr_drawing` turns it into
pixels. Lung geometry (local coordinates, :meth:`Lung.margin`) lives here because sampling
places findings inside the lungs with it.

Written here because no library draws chest-X-ray phantoms with labelled findings; nothing is
borrowed, proportions follow textbook conventions (cardiomegaly: CTR above ~0.5). This module
and the drawing module are hashed into the disk-cache key (``synthetic_cxr.cache_path``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINDINGS = ("nodule", "effusion", "cardiomegaly", "opacity", "pneumothorax")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Lung:
    """One lung field. Local coordinates: u = 0 at the medial border, 1 at the lateral wall;
    t = 0 at the apex, 1 at the costophrenic angle."""

    side: int  # -1: image left (patient's right), +1: image right
    medial: float  # |x| of the medial border
    lateral: float  # |x| of the lateral wall (= thorax half-width)
    apex: float  # y of the apex
    base: float  # y of the costophrenic angle
    dome: float  # height of the diaphragm dome, in lung heights

    def to_body(self, u, t):
        return self.side * (self.medial + u * (self.lateral - self.medial)), self.apex + t * (self.base - self.apex)

    def to_local(self, x, y):
        return (self.side * x - self.medial) / (self.lateral - self.medial), (y - self.apex) / (self.base - self.apex)

    def margin(self, x, y):
        """Signed distance-like margin (body units, > 0 inside) of the lung, and its wall margin
        (lateral and apical border only, where a pneumothorax shows)."""
        u, t = self.to_local(x, y)
        width, height = self.lateral - self.medial, self.base - self.apex
        wall = (1 - np.sqrt(((u - 0.42) / 0.58) ** 2 + (t - 1.0) ** 2)) * min(0.58 * width, height)
        base = (1 - self.dome * np.sin(np.pi * np.clip(u, 0, 1)) - t) * height
        return np.minimum(np.minimum(wall, u * width), base), wall


@dataclass(frozen=True)
class Blob:
    x: float
    y: float
    radius: float
    strength: float


@dataclass(frozen=True)
class Effusion:
    lung: int  # index into Case.lungs
    height: float  # fluid level above the costophrenic angle, in lung heights
    strength: float  # fraction of the lung's air replaced by fluid


@dataclass(frozen=True)
class Pneumothorax:
    lung: int
    depth: float  # width of the air rim along the lateral/apical wall, body units
    strength: float


@dataclass(frozen=True)
class Case:
    """Everything that decides one image; ``synthetic_cxr_drawing.render`` is a pure function
    of (case, size)."""

    angle: float  # radians
    scale: float
    shift: tuple[float, float]
    thorax: float  # half-width of the rib cage (lateral lung walls)
    lungs: tuple[Lung, Lung]
    ctr: float  # cardiothoracic ratio: heart width / thoracic width
    heart_height: float  # half-height of the heart ellipse
    rib_spacing: float
    rib_phase: float
    rib_strength: float
    texture: tuple[tuple[float, float, float], ...]  # (fx, fy, phase) of the lung markings
    contrast: float
    brightness: float
    gamma: float
    blur: float  # Gaussian sigma in pixels at 64 px (scaled with size)
    noise: float  # Gaussian sigma in intensity units
    noise_seed: int
    cardiomegaly: bool
    nodules: tuple[Blob, ...] = ()
    effusions: tuple[Effusion, ...] = ()
    opacities: tuple[Blob, ...] = ()
    pneumothorax: Pneumothorax | None = None

    @property
    def labels(self) -> np.ndarray:
        present = (bool(self.nodules), bool(self.effusions), self.cardiomegaly,
                   bool(self.opacities), self.pneumothorax is not None)
        return np.array(present, dtype=np.int64)

    @property
    def heart_width(self) -> float:
        return 2 * self.ctr * self.thorax


def case_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def sample_case(rng: np.random.Generator) -> Case:
    """One patient: anatomy, acquisition and findings (prevalences in the comments)."""
    thorax = rng.uniform(0.68, 0.80)
    apex, base = rng.uniform(-0.78, -0.64), rng.uniform(0.40, 0.56)
    lungs = tuple(Lung(side, medial=rng.uniform(0.09, 0.15), lateral=thorax,
                       apex=apex + rng.uniform(-0.03, 0.03),
                       base=base - (0.05 if side < 0 else 0.0) + rng.uniform(-0.03, 0.03),  # right dome higher
                       dome=rng.uniform(0.06, 0.14))
                  for side in (-1, 1))
    cardiomegaly = rng.random() < 0.18  # ~18%
    effusion = rng.random() < (0.35 if cardiomegaly else 0.10)  # ~14%
    opacity = rng.random() < (0.35 if effusion else 0.17)  # ~20%
    nodule = rng.random() < 0.14  # ~14%
    pneumothorax = rng.random() < 0.10  # ~10%
    # Normal and enlarged hearts overlap around the clinical cut-off of 0.5.
    ctr = rng.normal(0.54, 0.045) if cardiomegaly else rng.normal(0.45, 0.035)
    return Case(
        angle=np.deg2rad(rng.uniform(-6, 6)), scale=rng.uniform(0.92, 1.05),
        shift=(rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)),
        thorax=thorax, lungs=lungs, ctr=float(np.clip(ctr, 0.34, 0.68)),
        heart_height=rng.uniform(0.24, 0.30),
        rib_spacing=rng.uniform(0.13, 0.16), rib_phase=rng.uniform(0, 1),
        rib_strength=rng.uniform(0.06, 0.12),
        texture=tuple((rng.normal(0, 6), rng.normal(0, 6), rng.uniform(0, 2 * np.pi)) for _ in range(6)),
        contrast=rng.uniform(0.85, 1.15), brightness=rng.uniform(-0.06, 0.06),
        gamma=rng.uniform(0.8, 1.25), blur=rng.uniform(0.5, 0.9), noise=rng.uniform(0.01, 0.035),
        noise_seed=int(rng.integers(2**62)), cardiomegaly=bool(cardiomegaly),
        nodules=_sample_nodules(rng, lungs) if nodule else (),
        effusions=_sample_effusions(rng) if effusion else (),
        opacities=_sample_opacity(rng, lungs) if opacity else (),
        pneumothorax=_sample_pneumothorax(rng) if pneumothorax else None)


def _conspicuity(rng: np.random.Generator, low: float, high: float) -> float:
    """A strength between low and high: a third are obvious (upper half), the rest skewed to
    faint. The obvious ones make a finding learnable from few labels, the faint ones keep it
    from being solved."""
    if rng.random() < 0.35:
        return low + (high - low) * rng.uniform(0.5, 1.0)
    return low + (high - low) * rng.beta(1.0, 2.5)


def _point_in_lung(rng: np.random.Generator, lung: Lung, margin: float, t_range=(0.1, 0.9)):
    """A point well inside ``lung`` (rejection sampling in its local coordinates)."""
    for _ in range(100):
        u, t = rng.uniform(0.05, 0.95), rng.uniform(*t_range)
        x, y = lung.to_body(u, t)
        if lung.margin(np.float32(x), np.float32(y))[0] > margin:
            return float(x), float(y)
    return lung.to_body(0.5, 0.5)


def _sample_nodules(rng, lungs) -> tuple[Blob, ...]:
    count = 1 + int(rng.random() < 0.2)
    blobs = []
    for _ in range(count):
        radius = rng.uniform(0.045, 0.09)
        x, y = _point_in_lung(rng, lungs[rng.integers(2)], margin=radius)
        blobs.append(Blob(x, y, radius, _conspicuity(rng, 0.04, 0.35)))
    return tuple(blobs)


def _sample_effusions(rng) -> tuple[Effusion, ...]:
    sides = [[0], [1], [0, 1]][rng.choice(3, p=[0.4, 0.35, 0.25])]
    return tuple(Effusion(side, height=_conspicuity(rng, 0.03, 0.3), strength=rng.uniform(0.25, 0.9))
                 for side in sides)


def _sample_opacity(rng, lungs) -> tuple[Blob, ...]:
    """A patchy cluster of soft blobs in one zone (upper, middle, lower) of one lung."""
    lung = lungs[rng.integers(2)]
    zone = rng.integers(3)
    t_range = (0.15 + 0.27 * zone, 0.35 + 0.27 * zone)
    strength = _conspicuity(rng, 0.04, 0.32)
    blobs = []
    for _ in range(rng.integers(3, 7)):
        x, y = _point_in_lung(rng, lung, margin=0.0, t_range=t_range)
        blobs.append(Blob(x, y, rng.uniform(0.05, 0.12), strength * rng.uniform(0.6, 1.0)))
    return tuple(blobs)


def _sample_pneumothorax(rng) -> Pneumothorax:
    return Pneumothorax(int(rng.integers(2)), depth=_conspicuity(rng, 0.03, 0.14),
                        strength=rng.uniform(0.5, 1.0))

