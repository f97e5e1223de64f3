"""Small image-folder datasets written by the tests themselves (``folder:`` specs)."""
from __future__ import annotations

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
