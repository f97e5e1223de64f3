"""A replica of MED-PEFT's ``DatasetsSplits/`` layout, for a clone without ``../shared``.

The real lists may not be copied into the repository. What the split-list tests check of them is
the parser at the papers' scale: the folder and file names, the line counts (listed with their
git blobs in ``shared/data/splits/SOURCES.md`` and in the papers), the label columns and the
label totals that name the columns' order (Hernia, ChestX-ray14's rarest finding, has 42 test
positives; CheXpert's validation set has 80/68/33/45/67 positives for its five competition
findings, both published with the data sets). This module writes lists with exactly those
properties; image names are made up and labels are otherwise random. In CI the real lists are
required (``tests/conftest.py``), so the replica never stands in for them there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# folder -> (label columns, image-name pattern, lines per file)
LAYOUT: dict[str, tuple[int, str, dict[str, int]]] = {
    "NIH_ChestX-ray": (14, "{i:08d}_000.png",
                       {"train_list.txt": 78468, "val_list.txt": 11219, "test_list.txt": 22433,
                        "train_1.txt": 785, "train_10.txt": 7847}),
    "RSNA_Pneumonia": (1, "stage_2_train_images/{i:08x}-0000-4000-8000-000000000000.dcm",
                       {"train_list.txt": 25184, "val_list.txt": 1500, "test_list.txt": 3000,
                        "train_1.txt": 251, "train_10.txt": 2518}),
    # the public CheXpert lists have no train_list.txt
    "CheXpert": (5, "CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg",
                 {"val_list.txt": 234, "test_list.txt": 668, "train_1.txt": 2234, "train_10.txt": 22341}),
}
# (folder, file) -> exact positives per label column
PUBLISHED_TOTALS = {("NIH_ChestX-ray", "test_list.txt"): {13: 42},
                    ("CheXpert", "val_list.txt"): {0: 80, 1: 68, 2: 33, 3: 45, 4: 67}}


def _labels(rng: np.random.Generator, lines: int, columns: int, totals: dict[int, int]) -> np.ndarray:
    labels = (rng.random((lines, columns)) < 0.1).astype(np.uint8)
    labels[0] = 1  # every column has a positive in every file
    for column, total in totals.items():
        labels[:, column] = 0
        labels[rng.choice(lines, total, replace=False), column] = 1
    return labels


def write_replica(root: Path) -> Path:
    """Write the three folders under ``root`` (about 9 MB, under a second) and return ``root``."""
    rng = np.random.default_rng(0)
    for folder, (columns, pattern, files) in LAYOUT.items():
        (root / folder).mkdir(parents=True)
        offset = 0
        for file, lines in files.items():
            labels = _labels(rng, lines, columns, PUBLISHED_TOTALS.get((folder, file), {}))
            rows = (f"{pattern.format(i=offset + i)} {' '.join(map(str, row))}\n"
                    for i, row in enumerate(labels.tolist()))
            (root / folder / file).write_text("".join(rows))
            offset += lines
    return root
