"""MedMNIST v2 / MedMNIST+ 2D datasets from their official ``.npz`` files.

Spec: ``medmnist:<flag>[@<size>]`` with size 28 (default; file ``<flag>.npz``) or 64, 128,
224 (file ``<flag>_<size>.npz``), read from the data root (``--data-root``, ``$MEDPEFT_DATA``,
default ``~/.medmnist``, the official package's default). Task types and label names follow
the official ``medmnist/info.py`` (MedMNIST/MedMNIST); ``retinamnist``'s ordinal grades are
treated as multi-class, as the official evaluator scores them. Nothing is downloaded at run
time: a missing file gets an error saying where we looked and where to fetch it.

PneumoniaMNIST and BreastMNIST at 28 px ship inside medpeft (``medpeft/data/embedded``, CC BY
4.0, see its SOURCES.md): when no data root is given and ``~/.medmnist`` lacks the file, the
embedded copy is used after its MD5 is checked against the official value.

The official files hold a few images with identical pixels in two splits (see
``EXPECTED_DUPLICATES``); :mod:`medpeft.data.duplicates` counts them in a warning.
"""
from __future__ import annotations

import functools
import hashlib
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..base import ArrayImages, DataError
from ..spec import take_options
from .base import SOURCES, DataSource, SourceData, SplitData

SIZES = (28, 64, 128, 224)
EMBEDDED = Path(__file__).resolve().parents[1] / "embedded"
# files shipped with medpeft -> their official MD5 (MedMNIST/MedMNIST medmnist/info.py)
EMBEDDED_MD5 = {"pneumoniamnist.npz": "28209eda62fecd6e6a2d98b1501bb15f",
                "breastmnist.npz": "750601b1f35ba3300ea97c75c52ff8f6"}
DOWNLOAD_V2 = "https://zenodo.org/records/6496656/files/{file}?download=1"
DOWNLOAD_PLUS = "https://zenodo.org/records/10519652/files/{file}?download=1"

_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
           "liver", "lung-left", "lung-right", "pancreas", "spleen")

# flag -> (task, label names, channels, official split sizes train/val/test)
FLAGS: dict[str, tuple[str, tuple[str, ...], int, tuple[int, int, int]]] = {
    "pathmnist": ("multiclass", ("adipose", "background", "debris", "lymphocytes", "mucus",
                                 "smooth muscle", "normal colon mucosa", "cancer-associated stroma",
                                 "colorectal adenocarcinoma epithelium"), 3, (89996, 10004, 7180)),
    "chestmnist": ("multilabel", ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass",
                                  "nodule", "pneumonia", "pneumothorax", "consolidation", "edema",
                                  "emphysema", "fibrosis", "pleural", "hernia"), 1, (78468, 11219, 22433)),
    "dermamnist": ("multiclass", ("actinic keratoses and intraepithelial carcinoma",
                                  "basal cell carcinoma", "benign keratosis-like lesions",
                                  "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"),
                   3, (7007, 1003, 2005)),
    "octmnist": ("multiclass", ("choroidal neovascularization", "diabetic macular edema", "drusen",
                                "normal"), 1, (97477, 10832, 1000)),
    "pneumoniamnist": ("binary", ("normal", "pneumonia"), 1, (4708, 524, 624)),
    "retinamnist": ("multiclass", ("0", "1", "2", "3", "4"), 3, (1080, 120, 400)),
    "breastmnist": ("binary", ("malignant", "normal, benign"), 1, (546, 78, 156)),
    "bloodmnist": ("multiclass", ("basophil", "eosinophil", "erythroblast",
                                  "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                                  "lymphocyte", "monocyte", "neutrophil", "platelet"), 3, (11959, 1712, 3421)),
    "tissuemnist": ("multiclass", ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                                   "Glomerular endothelial cells", "Interstitial endothelial cells",
                                   "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                                   "Thick Ascending Limb"), 1, (165466, 23640, 47280)),
    "organamnist": ("multiclass", _ORGANS, 1, (34581, 6491, 17778)),
    "organcmnist": ("multiclass", _ORGANS, 1, (13000, 2392, 8268)),
    "organsmnist": ("multiclass", _ORGANS, 1, (13940, 2452, 8829)),
}

# flag -> what its images are, in words (MedMNIST v2, Table 1: data modality)
MODALITIES = {"pathmnist": "colon pathology slide", "chestmnist": "chest X-ray", "dermamnist": "dermatoscope image",
              "octmnist": "retinal OCT scan", "pneumoniamnist": "chest X-ray", "retinamnist": "fundus photograph",
              "breastmnist": "breast ultrasound", "bloodmnist": "blood cell microscope image",
              "tissuemnist": "kidney cortex microscope image", "organamnist": "abdominal CT slice",
              "organcmnist": "abdominal CT slice", "organsmnist": "abdominal CT slice"}


#: the official files hold a few identical images in two splits (PneumoniaMNIST@28: 8 of val
#: repeat training images; BreastMNIST@28: 1 of test, with the other label), so for MedMNIST
#: they are a warning that counts them (data/duplicates.py), not an error
EXPECTED_DUPLICATES = "as in the official MedMNIST files; a warning, not an error, for them"


def parse_target(target: str) -> tuple[str, int]:
    """``chestmnist@64`` -> (``chestmnist``, 64)."""
    flag, _, size_text = target.lower().partition("@")
    if flag not in FLAGS:
        import difflib
        hint = difflib.get_close_matches(flag, FLAGS, n=1)
        maybe = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ValueError(f"unknown MedMNIST flag {flag!r}.{maybe} 2D flags: {', '.join(FLAGS)}")
    try:
        size = int(size_text) if size_text else 28
    except ValueError:
        raise ValueError(f"medmnist:{target}: size after '@' must be one of {SIZES}") from None
    if size not in SIZES:
        raise ValueError(f"medmnist:{target}: size must be one of {SIZES}, got {size}")
    return flag, size


@functools.lru_cache(maxsize=None)
def embedded_file(name: str) -> Path:
    """An embedded file, checked once per process against its official MD5."""
    path = EMBEDDED / name
    if not path.is_file():
        raise DataError(f"the embedded copy {path} is missing from this installation of medpeft")
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != EMBEDDED_MD5[name]:
        raise DataError(f"the embedded copy {path} is damaged (md5 {digest}, official "
                        f"{EMBEDDED_MD5[name]}); reinstall medpeft")
    return path


def file_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


@SOURCES.register("medmnist")
class MedMNISTSource(DataSource):
    default_root = "~/.medmnist"

    def read(self) -> SourceData:
        take_options(self.spec, {})
        flag, size = parse_target(self.spec.target)
        task, names, channels, official = FLAGS[flag]
        path = self._path(file_name(flag, size))
        arrays = self._load(path, flag, size)
        stat = path.stat()
        splits = {}
        for split, expected in zip(("train", "val", "test"), official):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if len(images) != len(labels):
                raise DataError(f"{path}: {split}_images has {len(images)} items but "
                                f"{split}_labels has {len(labels)}")
            if len(images) != expected:
                warnings.warn(f"{path}: {split} has {len(images)} images, the official {flag} has "
                              f"{expected}; is this a modified copy?", stacklevel=2)
            labels = np.asarray(labels)
            labels = labels[:, None] if labels.ndim == 1 else labels
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, split)  # content digests cached by it
            splits[split] = SplitData(ArrayImages(images, f"{path}:{split}_images", key), labels,
                                      f"{path}:{split}_labels")
        return SourceData(name=f"medmnist:{flag}@{size}", task=task, label_names=names,
                          channels=channels, splits=splits, image_size=(size, size), modality=MODALITIES[flag],
                          expected_duplicates=EXPECTED_DUPLICATES)

    def _path(self, name: str) -> Path:
        """The file in the data root; the embedded copy when the root is the default one and
        lacks it."""
        default = Path(self.default_root).expanduser()
        root = Path(self.data_root or default)
        path = root / name
        if not path.is_file() and root == default and name in EMBEDDED_MD5:
            return embedded_file(name)
        return path

    @staticmethod
    def _load(path: Path, flag: str, size: int) -> dict[str, np.ndarray]:
        if not path.is_file():
            url = (DOWNLOAD_V2 if size == 28 else DOWNLOAD_PLUS).format(file=path.name)
            raise DataError(
                f"MedMNIST file not found: {path}. medpeft does not download data; fetch it from "
                f"{url} (or `python -m medmnist download` with the medmnist package) into "
                f"{path.parent}, or point --data-root / $MEDPEFT_DATA at the folder that has it.")
        keys = [f"{s}_{kind}" for s in ("train", "val", "test") for kind in ("images", "labels")]
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in keys if k not in npz.files]
                if missing:
                    raise DataError(f"{path}: not an official MedMNIST file, missing arrays {missing}")
                return {k: npz[k] for k in keys}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"{path}: cannot read the .npz file ({err}); download it again") from None
