"""The drawing of ``synthetic-cxr``: a patient (:class:`~.synthetic_cxr_cases.Case`) to pixels.

All numpy on coordinate grids, rendered at the target size:
- :func:`density` adds up an attenuation-like map in "body" coordinates (x right, y down, the
  rib cage spans about [-0.75, 0.75]; :func:`body_grid` applies the pose): soft-tissue
  silhouette and neck, two air-filled lung fields with domed bases and sharp costophrenic
  angles, the heart shadow (width set by the cardiothoracic ratio), spine, trachea, clavicles,
  ribs, hila and vascular markings; then the findings (nodules, effusion, opacity,
  pneumothorax). Periodic structures (ribs, markings) are attenuated by their frequency so that
  small sizes do not alias into moire.
- :func:`render` applies exposure (contrast, brightness, gamma), a slight blur and noise;
  :func:`generate` draws a whole split (uint8 images and labels).
- :func:`anatomy_masks` gives the soft masks of body, lungs and heart (tests check where
  findings show with them).

Written here because no library draws chest-X-ray phantoms; nothing is borrowed. This module
and the cases module are hashed into the disk-cache key (``synthetic_cxr.cache_path``).
"""
from __future__ import annotations

import numpy as np

from .synthetic_cxr_cases import FINDINGS, Case, case_rng, sample_case

# Tissue "densities" before exposure: soft tissue is bright, lung air subtracts from it.
SOFT, AIR, BACKGROUND = 0.62, 0.40, 0.03


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
        margin, wall = lung.margin(x, y)
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
        masks[name] = _soft(lung.margin(x, y)[0], edge)
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
