"""``synthetic-cxr``: procedurally drawn chest-X-ray-like images, medpeft's embedded default data.

Spec: ``synthetic-cxr[?n=2000&n_val=400&n_test=1000&size=64&seed=0]`` (train/val/test sizes,
image side in pixels >= 16, seed). Task ``multilabel`` over :data:`FINDINGS`, one channel.

Why: the demo, the tests and the docs need a chest-X-ray-shaped multi-label task that runs on
a laptop CPU in minutes and needs nothing downloaded. Numbers on it say whether medpeft's
machinery works and how methods rank on an easy-to-hard task; they say nothing about real
radiographs. docs/data.md shows examples and the calibration (AUROC at 1/10/100% labels).

How an image is made (all numpy on coordinate grids, rendered at the target size):
1. :func:`sample_case` draws one patient from its own RNG, ``default_rng([seed, split, index])``,
   so an image depends only on (seed, split, index, size): the first k images of a split do
   not depend on ``n``, and the three splits never share a stream.
2. :func:`density` adds up an attenuation-like map in "body" coordinates (x right, y down,
   the rib cage spans about [-0.75, 0.75]): soft-tissue silhouette and neck, two air-filled
   lung fields with domed bases and sharp costophrenic angles, the heart shadow (width set by
   the cardiothoracic ratio), spine, trachea, clavicles, ribs, hila and vascular markings;
   then the findings.
3. :func:`render` applies exposure (contrast, brightness, gamma), a slight blur and noise.

Patients vary in pose (rotation, scale, shift), thorax and lung size, diaphragm height,
exposure and noise. Findings co-occur (cardiomegaly raises the odds of effusion, effusion of
opacity) and vary in conspicuity down to nearly invisible, which, with the overlap of normal
and enlarged hearts, keeps a perfect score out of reach. Periodic structures (ribs, markings)
are attenuated by their frequency so that small sizes do not alias into moire.

Nothing is borrowed; proportions follow textbook conventions (cardiomegaly: CTR above ~0.5).
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base import ArrayImages
from ..spec import take_options
from .base import SOURCES, DataSource, SourceData, SplitData

FINDINGS = ("nodule", "effusion", "cardiomegaly", "opacity", "pneumothorax")
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
OPTIONS = {"n": int, "n_val": int, "n_test": int, "size": int, "seed": int}
DEFAULTS = {"n": 2000, "n_val": 400, "n_test": 1000, "size": 64, "seed": 0}
MIN_SIZE, MAX_SIZE = 16, 1024
VERSION = "1"  # part of the disk-cache key, with a hash of this file (see cache_path)
CACHE_ENV = "MEDPEFT_CACHE"

# Tissue "densities" before exposure: soft tissue is bright, lung air subtracts from it.
SOFT, AIR, BACKGROUND = 0.62, 0.40, 0.03


# ----------------------------------------------------------------------------- patients

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
    """Everything that decides one image; :func:`render` is a pure function of (case, size)."""

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
        if _lung_margin(lung, np.float32(x), np.float32(y))[0] > margin:
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


# ----------------------------------------------------------------------------- drawing

def _soft(margin, edge):
    """Smooth step: 0 outside (margin < 0), 1 inside, over about ``edge`` body units."""
    return 0.5 + 0.5 * np.tanh(margin / edge)


def _gauss(x, y, cx, cy, radius):
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))


def _alias_gain(frequency, size: int):
    """Amplitude left of a wave of ``frequency`` cycles per body unit after a 0.7 px blur:
    keeps ribs and markings from aliasing at small sizes."""
    sigma = 0.7 * 2.0 / size  # body units
    return np.exp(-2 * (np.pi * sigma * frequency) ** 2)


def body_grid(case: Case, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Body coordinates (x, y) of every pixel centre, (size, size) each: the pose is applied here."""
    pixels = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    px, py = np.meshgrid(pixels, pixels)  # image x to the right, y down
    px, py = px - case.shift[0], py - case.shift[1]
    cos, sin = np.float32(np.cos(case.angle)), np.float32(np.sin(case.angle))
    return (cos * px + sin * py) / case.scale, (-sin * px + cos * py) / case.scale


def _lung_margin(lung: Lung, x, y):
    """Signed distance-like margin (body units, > 0 inside) of a lung, and its wall margin
    (lateral and apical border only, where a pneumothorax shows)."""
    u, t = lung.to_local(x, y)
    width, height = lung.lateral - lung.medial, lung.base - lung.apex
    wall = (1 - np.sqrt(((u - 0.42) / 0.58) ** 2 + (t - 1.0) ** 2)) * min(0.58 * width, height)
    base = (1 - lung.dome * np.sin(np.pi * np.clip(u, 0, 1)) - t) * height
    return np.minimum(np.minimum(wall, u * width), base), wall


def heart_mask(case: Case, x, y, edge: float):
    """The heart shadow: an ellipse tilted with its apex down to the patient's left, whose
    horizontal extent is ``ctr * thoracic width``; its lower part hides below the diaphragm."""
    half_width, b, tilt = case.ctr * case.thorax, case.heart_height, np.deg2rad(25)
    # semi-axis a such that the tilted ellipse is exactly 2 * half_width wide
    a = np.sqrt(max(half_width**2 - (b * np.sin(tilt)) ** 2, 1e-4)) / np.cos(tilt)
    cx = 0.2 * half_width
    cy = 0.5 * (case.lungs[0].base + case.lungs[1].base) - 0.8 * b
    dx, dy = x - cx, y - cy
    along, across = np.cos(tilt) * dx + np.sin(tilt) * dy, -np.sin(tilt) * dx + np.cos(tilt) * dy
    q = (along / a) ** 2 + (across / b) ** 2
    return _soft((1 - np.sqrt(q)) * min(a, b), edge)


def _body(case: Case, x, y, edge):
    """Torso (a boxy superellipse: broad shoulders) joined with the neck."""
    half_width = case.thorax + 0.2
    q = (np.abs(x) / half_width) ** 4 + (np.abs(y - 0.45) / 1.45) ** 4
    torso = (1 - q**0.25) * half_width
    neck = np.minimum(0.2 - np.abs(x), -0.55 - y)
    return _soft(np.maximum(torso, neck), edge)


def _ribs(case: Case, x, y, size):
    """Posterior ribs: bands rising from the spine, then curving down to the lateral wall."""
    curve = y + 0.35 * np.abs(x) - 0.85 * x**2
    phase = 2 * np.pi * (curve / case.rib_spacing + case.rib_phase)
    f = 1.0 / case.rib_spacing
    # (0.5 + 0.5 cos)^2 written by harmonics, so each can be damped against aliasing
    bands = 0.375 + 0.5 * _alias_gain(f, size) * np.cos(phase) + 0.125 * _alias_gain(2 * f, size) * np.cos(2 * phase)
    top, bottom = min(l.apex for l in case.lungs) - 0.12, max(l.base for l in case.lungs) + 0.04
    region = np.minimum(np.minimum(y - top, bottom - y), case.thorax + 0.05 - np.abs(x))
    return case.rib_strength * bands * _soft(region, 0.03)


def _clavicles(x, y, edge):
    """Two bright bars from the sternal notch out and up to the shoulders."""
    out = np.zeros_like(x)
    for side in (-1, 1):
        ax, ay, bx, by = side * 0.08, -0.62, side * 0.62, -0.78
        dx, dy = bx - ax, by - ay
        s = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy), 0, 1)
        distance = np.sqrt((x - ax - s * dx) ** 2 + (y - ay - s * dy) ** 2)
        out = np.maximum(out, _soft(0.028 - distance, edge))
    return 0.12 * out


def _spine_and_trachea(x, y, edge):
    spine = _soft(0.06 - np.abs(x), edge) * (0.06 + 0.025 * np.cos(2 * np.pi * y / 0.11))
    trachea = _soft(0.026 - np.abs(x), edge) * _soft(-0.3 - y, 0.05)
    return spine - 0.12 * trachea


def _gastric_bubble(case: Case, x, y):
    """Air in the stomach under the left hemidiaphragm (image right)."""
    lung = case.lungs[1]
    return -0.15 * _gauss(x, (y - lung.base - 0.1) * 1.6, 0.5 * lung.lateral, 0, 0.07)


def _markings(case: Case, x, y, size):
    """Vascular markings: a smooth random texture, stronger towards the hila."""
    texture = np.zeros_like(x)
    for fx, fy, phase in case.texture:
        texture += _alias_gain(np.hypot(fx, fy), size) * np.cos(fx * x + fy * y + phase)
    hila = sum(_gauss(x, y, l.side * (l.medial + 0.1), l.apex + 0.5 * (l.base - l.apex), 0.12)
               for l in case.lungs)
    return 0.025 * texture * (0.4 + hila) + 0.08 * hila



def _fluid(case: Case, index: int, x, y, edge):
    """Effusion in lung ``index``: fraction of air replaced, rising to a meniscus laterally."""
    lung = case.lungs[index]
    u, t = lung.to_local(x, y)
    fluid = np.zeros_like(x)
    for e in case.effusions:
        if e.lung == index:
            level = 1 - e.height - 0.6 * e.height * np.clip(u, 0, 1) ** 2
            fluid += e.strength * _soft((t - level) * (lung.base - lung.apex), edge)
    return fluid


def _pneumothorax(case: Case, index: int, x, y, wall, edge):
    """Air rim along the apical and lateral wall of lung ``index`` (no markings, darker) and
    the thin bright visceral pleural line at its inner edge: (rim, line), each (size, size)."""
    p = case.pneumothorax
    if p is None or p.lung != index:
        return 0.0, 0.0
    lung = case.lungs[index]
    u, _ = lung.to_local(x, y)
    lateral = _soft((u - 0.3) * (lung.lateral - lung.medial), 0.03)  # not along the mediastinum
    rim = _soft(p.depth - wall, edge) * lateral
    line = np.exp(-(((wall - p.depth) / (1.5 * edge)) ** 2)) * lateral
    return rim, p.strength * line


def _lesions(case: Case, x, y, markings, edge):
    """Nodules (small sharp bright disks) and opacities (patchy soft brightness)."""
    out = np.zeros_like(x)
    for b in case.nodules:
        out += b.strength * _soft(b.radius - np.hypot(x - b.x, y - b.y), edge)
    if case.opacities:
        cloud = sum(b.strength * _gauss(x, y, b.x, b.y, b.radius) for b in case.opacities)
        out += np.minimum(cloud, max(b.strength for b in case.opacities)) * (0.7 + 10 * markings)
    return out


def density(case: Case, size: int) -> np.ndarray:
    """Attenuation-like map (size, size), float32, before exposure, blur and noise."""
    x, y = body_grid(case, size)
    edge = np.float32(0.6 * 2.0 / size)  # edges about a pixel wide
    heart = heart_mask(case, x, y, edge)
    markings = _markings(case, x, y, size)
    body = _body(case, x, y, edge)
    d = body * (SOFT + _spine_and_trachea(x, y, edge) + _clavicles(x, y, edge) + _gastric_bubble(case, x, y))
    lungs = np.zeros_like(x)
    for index, lung in enumerate(case.lungs):
        margin, wall = _lung_margin(lung, x, y)
        inside = _soft(margin, edge)
        rim, line = _pneumothorax(case, index, x, y, wall, edge)
        strength = case.pneumothorax.strength if case.pneumothorax is not None else 0.0
        air = AIR * (1 - _fluid(case, index, x, y, edge)) * (1 + 0.25 * strength * rim)
        d += inside * (1 - 0.9 * heart) * (markings * (1 - rim) + 0.08 * line - air)
        lungs += inside
    d += lungs * (1 - 0.5 * heart) * _lesions(case, x, y, markings, edge)
    d += _ribs(case, x, y, size) * (0.4 + 0.6 * lungs)
    return np.maximum(d, BACKGROUND).astype(np.float32)


def anatomy_masks(case: Case, size: int) -> dict[str, np.ndarray]:
    """Soft masks in [0, 1], (size, size) each, of the body, each lung and the heart."""
    x, y = body_grid(case, size)
    edge = np.float32(0.6 * 2.0 / size)
    masks = {"body": _body(case, x, y, edge), "heart": heart_mask(case, x, y, edge)}
    for lung, name in zip(case.lungs, ("lung_right", "lung_left")):  # the patient's right is image left
        masks[name] = _soft(_lung_margin(lung, x, y)[0], edge)
    return masks


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (sigma in pixels), edges repeated."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    padded = np.pad(image, radius, mode="edge")
    rows = sum(w * padded[:, k:k + image.shape[1]] for k, w in enumerate(taps))  # (S + 2r, S)
    return sum(w * rows[k:k + image.shape[0]] for k, w in enumerate(taps))


def render(case: Case, size: int) -> np.ndarray:
    """The image of ``case`` at ``size`` x ``size``: float32 in [0, 1]."""
    image = np.clip(case.brightness + case.contrast * density(case, size), 0, 1) ** case.gamma
    image = _blur(image, case.blur * size / 64)
    noise = np.random.default_rng(case.noise_seed).standard_normal((size, size), dtype=np.float32)
    return np.clip(image + case.noise * noise, 0, 1)


def generate(seed: int, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, size, size) uint8 and labels (n, len(FINDINGS)) int64, no caching."""
    images = np.empty((n, size, size), dtype=np.uint8)
    labels = np.empty((n, len(FINDINGS)), dtype=np.int64)
    for index in range(n):
        case = sample_case(case_rng(seed, split, index))
        images[index] = np.round(render(case, size) * 255)
        labels[index] = case.labels
    return images, labels


# ----------------------------------------------------------------------------- caching

def _source_hash() -> str:
    """Short hash of this file: a generator edit without a VERSION bump still misses the cache."""
    try:
        return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]
    except OSError:
        return "nohash"


def cache_path(seed: int, split: str, n: int, size: int) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or "~/.cache/medpeft").expanduser() / "synthetic"
    return root / f"synthetic-cxr-v{VERSION}-{_source_hash()}-seed{seed}-{split}-n{n}-size{size}.npz"


def _read_cache(path: Path, n: int, size: int):
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError:
        return None
    except Exception as err:  # truncated or foreign file: regenerate
        warnings.warn(f"unreadable synthetic-cxr cache file {path} ({err}); regenerating", stacklevel=3)
        return None
    if images.shape != (n, size, size) or images.dtype != np.uint8 or labels.shape != (n, len(FINDINGS)):
        warnings.warn(f"synthetic-cxr cache file {path} has the wrong shape; regenerating", stacklevel=3)
        return None
    return images, labels.astype(np.int64)


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Atomic: a reader sees the old file or the whole new one, never half of it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, images=images, labels=labels)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"could not write the synthetic-cxr cache {path} ({err}); it will be "
                      f"regenerated next time (set ${CACHE_ENV} to a writable folder)", stacklevel=3)


@functools.lru_cache(maxsize=6)
def load_split(seed: int, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A split from memory, else from the disk cache, else generated (and cached); read-only."""
    path = cache_path(seed, split, n, size)
    cached = _read_cache(path, n, size)
    if cached is None:
        cached = generate(seed, split, n, size)
        _write_cache(path, *cached)
    for array in cached:
        array.setflags(write=False)
    return cached


# ----------------------------------------------------------------------------- the source

def read_options(spec) -> dict:
    options = take_options(spec, OPTIONS, DEFAULTS)
    for key in ("n", "n_val", "n_test"):
        if options[key] < 1:
            raise ValueError(f"{spec.text}: {key} must be at least 1, got {options[key]}")
    if not MIN_SIZE <= options["size"] <= MAX_SIZE:
        raise ValueError(f"{spec.text}: size must be between {MIN_SIZE} and {MAX_SIZE} pixels, "
                         f"got {options['size']} (e.g. size=64)")
    if options["seed"] < 0:
        raise ValueError(f"{spec.text}: seed must be >= 0, got {options['seed']}")
    return options


@SOURCES.register("synthetic-cxr")
class SyntheticCXRSource(DataSource):
    def read(self) -> SourceData:
        if self.spec.target:
            raise ValueError(f"{self.spec.text}: synthetic-cxr takes no ':target'; "
                             "use options, e.g. synthetic-cxr?n=500&size=32&seed=1")
        o = read_options(self.spec)
        name = f"synthetic-cxr?n={o['n']}&n_val={o['n_val']}&n_test={o['n_test']}&size={o['size']}&seed={o['seed']}"
        splits = {}
        for split, n in (("train", o["n"]), ("val", o["n_val"]), ("test", o["n_test"])):
            images, labels = load_split(o["seed"], split, n, o["size"])
            origin = f"synthetic-cxr(seed={o['seed']}, size={o['size']}):{split}"
            splits[split] = SplitData(ArrayImages(images, origin), labels, origin)
        return SourceData(name=name, task="multilabel", label_names=FINDINGS, channels=1,
                          splits=splits, image_size=(o["size"], o["size"]), modality="chest X-ray")
