"""Presets for the datasets of Dutt et al. (MIDL 2024, "PEFT for Medical Image Analysis: The Missed
Opportunity") in the file layouts the datasets are distributed in.

A preset is nothing but defaults for the options of the ``csv:`` or ``folder:`` source (the way
``splits:``'s ``preset=`` fixes label columns and names), so anything a preset sets can be
overridden in the spec, and everything a preset does is also possible without one:

    csv:/data/HAM10000?preset=ham10000                     # the folder holding the metadata CSV
    csv:/data/fitzpatrick17k/fitzpatrick17k.csv?preset=fitzpatrick17k&label=label
    csv:/data/SMDG?preset=smdg
    folder:/data/Dataset_BUSI_with_GT?preset=breastus

What each preset assumes about the files, and where that comes from:

* ``ham10000`` -- ``HAM10000_metadata.csv`` (Tschandl et al. 2018; Harvard Dataverse and the
  Kaggle copy) with columns ``lesion_id, image_id, dx, ...``; images ``<image_id>.jpg`` in
  ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/`` next to it (the two zip files of
  the release; lower-case copies of the Kaggle mirror are also looked in). Class ``dx`` (7
  classes); split grouped by ``lesion_id``, since a lesion often has several images
  (a table with its own ``split`` column keeps that split instead).
* ``fitzpatrick17k`` -- ``fitzpatrick17k.csv`` of github.com/mattgroh/fitzpatrick17k with
  ``md5hash, fitzpatrick_scale (older releases: fitzpatrick), label, nine_partition_label,
  three_partition_label, ...``; the images are not distributed (they are downloaded from the
  ``url`` column) and are assumed saved as ``<md5hash>.jpg`` in ``images/`` next to the CSV, or
  beside it. Class ``three_partition_label`` (benign / malignant / non-neoplastic; ``label=label``
  gives the 114 conditions); subgroup: the Fitzpatrick skin type (1-6, -1 unknown).
* ``smdg`` -- ``metadata - standardized.csv`` of SMDG-19 (github.com/TheBeastCoding/standardized-
  multichannel-dataset-glaucoma, also on Kaggle) with ``names`` (image name without extension)
  and ``types`` (0 non-glaucoma, 1 glaucoma, -1 glaucoma suspect); images ``<names>.png`` in
  ``full-fundus/`` (the Kaggle archive nests it as ``full-fundus/full-fundus/``). The column
  names are read from the GitHub repository's CSV header; the Kaggle copy is assumed to match.
  Suspects (-1; 133 of 12,049 in the dataset paper's counts) are dropped: a binary task.
* ``breastus`` -- the BUSI breast ultrasound set (Al-Dhabyani et al. 2020,
  ``Dataset_BUSI_with_GT``): class folders ``benign/ malignant/ normal/`` whose segmentation
  masks ``<image>_mask.png``, ``<image>_mask_1.png`` lie beside the images and are excluded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ...registry import Registry


@dataclass(frozen=True)
class CsvPreset:
    """Defaults for a ``csv:`` spec: the table's file name, option values and image folders."""

    #: the metadata file, so a spec may name the dataset's folder instead of the file
    file: str
    #: spec option defaults; a tuple of column names means the first of them the table has
    options: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    #: folders next to the table that hold the images (those that exist), unless root= is given
    image_folders: tuple[str, ...] = ()

    def defaults(self, header: list[str]) -> dict[str, str]:
        """The option defaults, with column choices resolved against the table's header."""
        resolved = {}
        for key, value in self.options.items():
            if isinstance(value, tuple):
                value = next((column for column in value if column in header), value[0])
            resolved[key] = value
        return resolved


CSV_PRESETS: Registry[CsvPreset] = Registry("csv preset")
CSV_PRESETS.add("ham10000", CsvPreset(
    file="HAM10000_metadata.csv",
    options={"path": "image_id", "label": "dx", "group": "lesion_id", "ext": ".jpg"},
    image_folders=("HAM10000_images_part_1", "HAM10000_images_part_2",
                   "ham10000_images_part_1", "ham10000_images_part_2")))
CSV_PRESETS.add("fitzpatrick17k", CsvPreset(
    file="fitzpatrick17k.csv",
    options={"path": "md5hash", "label": "three_partition_label", "ext": ".jpg",
             "subgroup": ("fitzpatrick_scale", "fitzpatrick")},
    image_folders=("images",)))
CSV_PRESETS.add("smdg", CsvPreset(
    file="metadata - standardized.csv",
    options={"path": "names", "label": "types", "drop": "-1", "names": "non-glaucoma,glaucoma",
             "ext": ".png"},
    image_folders=("full-fundus/full-fundus", "full-fundus")))

#: ``folder:`` presets: option defaults
FOLDER_PRESETS: Registry[Mapping[str, str]] = Registry("folder preset")
FOLDER_PRESETS.add("breastus", {"exclude": "*_mask*.png"})
