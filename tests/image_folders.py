"""Small image-folder datasets written by the tests themselves (``folder:`` specs), and
:func:`stamped` / :func:`save_stamped`, which make the images a test writes under different
names differ."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def write_class_folders(root: Path, counts: dict[str, int], size: int = 16, seed: int = 0) -> list[Path]:
    """``root/<class>/<class>_<i>.png`` grey noise images, ``counts[class]`` of each; the paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = root / name / f"{name}_{i:03d}.png"
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
            paths.append(path)
    return paths


def write_split_folders(root: Path, counts: dict[str, dict[str, int]], size: int = 16) -> dict[str, list[Path]]:
    """``root/{train,val,test}/<class>/...``: split name -> its image paths."""
    return {split: write_class_folders(root / split, per_class, size, seed=index)
            for index, (split, per_class) in enumerate(counts.items())}


def stamped(image: np.ndarray, path) -> np.ndarray:
    """A copy of ``image`` whose first four values are the CRC-32 of ``path``'s last three parts
    (``split/class/name``): one base image written under many names gives images that differ,
    the same way in every run (tmp folders vary, those parts do not). The same pixels in two
    splits are an error (``medpeft/data/duplicates.py``), so datasets of one repeated image
    would be refused. JPEG's compression can erase a mark that small, so for a ``.jpg`` /
    ``.jpeg`` path the image is noise of ``image``'s shape and dtype, seeded by that number."""
    key = zlib.crc32("/".join(Path(path).parts[-3:]).encode())
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        image = np.asarray(image)
        return np.random.default_rng(key).integers(0, 256, image.shape).astype(image.dtype)
    out = np.array(image, copy=True)
    out.reshape(-1)[:4] = np.frombuffer(key.to_bytes(4, "little"), np.uint8)
    return out


def save_stamped(path, image: np.ndarray) -> Path:
    """``image`` :func:`stamped` with ``path``, saved there (any format Pillow writes, by extension)."""
    Image.fromarray(stamped(image, path)).save(path)
    return Path(path)
