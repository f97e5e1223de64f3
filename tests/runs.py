"""Tiny finished runs and image files for the tests of prediction and serving (seconds on a CPU).

Runs of one seed and backbone config share their frozen base weights (a random init seeded by
the run), which is what lets a server hold them over one backbone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
from medpeft.train import finetune

PNEUMONIA = "medmnist:pneumoniamnist"  # ships with medpeft: binary, 28 px
BREAST = "medmnist:breastmnist"
SYNTHETIC = "synthetic-cxr?n=64&n_val=32&n_test=48&size=16"  # multilabel, 5 findings
VIT28 = BackboneConfig("vit_tiny", img_size=28, patch_size=7, drop_path=0.0, timm_kwargs={"depth": 1})
VIT16 = BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 1})


def train(out: Path, method: str = "lora", data: str = PNEUMONIA, backbone: BackboneConfig = VIT28, seed: int = 0,
          steps: int = 3, **options) -> Path:
    config = RunConfig(data=DataConfig(spec=data), backbone=backbone, method=method, method_options=options or None,
                       train=TrainConfig(steps=steps, batch_size=32, n_bootstrap=0, seed=seed))
    finetune(config, out, console=Console(quiet=True), progress=False)
    return out


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_dicom(path: Path, pixels: np.ndarray) -> Path:
    """An 8-bit MONOCHROME2 DICOM whose window (centre 128, width 256) maps stored value v to v / 255,
    so it decodes to the same array as a PNG of ``pixels``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation = "CR", "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 8, 8, 7, 0
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
