"""``synthetic-cxr``: procedurally drawn chest-X-ray-like images, medpeft's embedded default data.

Spec: ``synthetic-cxr[?n=2000&n_val=400&n_test=1000&size=64&seed=0]`` (train/val/test sizes,
image side in pixels >= 16, seed). Task ``multilabel`` over :data:`FINDINGS`, one channel.

Why: the demo, the tests and the docs need a chest-X-ray-shaped multi-label task that runs on
a laptop CPU in minutes and needs nothing downloaded. Numbers on it say whether medpeft's
machinery works and how methods rank on an easy-to-hard task; they say nothing about real
radiographs. docs/data.md shows examples and the calibration (AUROC at 1/10/100% labels).

This module holds the source (options, :class:`SyntheticCXRSource`) and the caches (in memory
and on disk, keyed by :func:`cache_path`). How an image is made, in two modules:
1. :mod:`.synthetic_cxr_cases`: ``sample_case`` draws one patient from its own RNG,
   ``default_rng([seed, split, index])``, so an image depends only on (seed, split, index,
   size): the first k images of a split do not depend on ``n``, and the three splits never
   share a stream.
2. :mod:`.synthetic_cxr_drawing`: ``density`` adds up an attenuation-like map (soft tissue,
   lungs, heart, spine, trachea, clavicles, ribs, hila and vascular markings, then the
   findings); ``render`` applies exposure, a slight blur and noise; ``generate`` draws a split.

Patients vary in pose (rotation, scale, shift), thorax and lung size, diaphragm height,
exposure and noise. Findings co-occur (cardiomegaly raises the odds of effusion, effusion of
opacity) and vary in conspicuity down to nearly invisible, which, with the overlap of normal
and enlarged hearts, keeps a perfect score out of reach.

Written here because no library makes such a data set; nothing is borrowed, proportions follow
textbook conventions (cardiomegaly: CTR above ~0.5).
"""
from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from ..base import ArrayImages
from ..spec import take_options
from . import synthetic_cxr_cases, synthetic_cxr_drawing
from .base import SOURCES, DataSource, SourceData, SplitData
from .synthetic_cxr_cases import FINDINGS
from .synthetic_cxr_drawing import generate

OPTIONS = {"n": int, "n_val": int, "n_test": int, "size": int, "seed": int}
DEFAULTS = {"n": 2000, "n_val": 400, "n_test": 1000, "size": 64, "seed": 0}
MIN_SIZE, MAX_SIZE = 16, 1024
VERSION = "1"  # part of the disk-cache key, with a hash of the generator's code (see cache_path)
CACHE_ENV = "MEDPEFT_CACHE"


# ----------------------------------------------------------------------------- caching

def _source_hash() -> str:
    """Short hash of the generator's code (the cases and drawing modules, which decide every
    pixel and label): a generator edit without a VERSION bump still misses the cache."""
    try:
        code = b"".join(Path(module.__file__).read_bytes()
                        for module in (synthetic_cxr_cases, synthetic_cxr_drawing))
    except OSError:
        return "nohash"
    return hashlib.sha256(code).hexdigest()[:8]


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
