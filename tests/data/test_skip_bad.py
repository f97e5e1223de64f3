"""skip_bad finds corrupt images (and images over the size limit) up front; advice at training
time; and the same through a real fine-tuning run."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from medpeft.data import DataError, load_dataset
from medpeft.runtime import RunConfig
from medpeft.train import ClassifierJob, finetune

from ..image_folders import save_stamped, write_split_folders
from ..train.tiny import QUIET, tiny_run
from .test_decode import write_png
from .test_image_limits import dicom_bomb

TINY = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16


def truncated_png(path):
    path = Path(path)
    write_png(path, np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:2000])  # of about 4 kB
    return path


def garbage_dicom(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return path


def make_folder(root, bad: dict[str, callable]):
    """folder: layout with 10 good PNGs per class and the given bad files."""
    for name in ("benign", "malignant"):
        (root / name).mkdir(parents=True)
        for i in range(10):
            save_stamped(root / name / f"{name}_{i}.png", TINY)
    for relative, write in bad.items():
        write(root / relative)
    return root


def all_paths(splits) -> list[str]:
    return [p for s in ("train", "val", "test") for p in splits.split(s).images.paths]


def test_skip_bad_finds_corrupt_images_up_front(tmp_path):
    root = make_folder(tmp_path / "skin", {"benign/cut.png": truncated_png,
                                           "malignant/junk.dcm": garbage_dicom})
    bad = {str(root / "benign" / "cut.png"), str(root / "malignant" / "junk.dcm")}
    with pytest.warns(UserWarning, match="skipped 2 bad item") as caught:
        splits = load_dataset(f"folder:{root}", skip_bad=True)
    message = str(caught[0].message)
    assert all(path in message for path in bad)
    assert "cannot decode" in message  # the truncated PNG's problem, as decoding found it
    assert sum(splits.info.split_sizes.values()) == 20 and len(splits.skipped) == 2
    assert not bad & set(all_paths(splits))
    for name in ("train", "val", "test"):  # everything left decodes
        dataset = splits.split(name)
        assert all(dataset[i][0].shape == (4, 4) for i in range(len(dataset)))


def test_without_skip_bad_the_training_time_error_gives_the_right_advice(tmp_path):
    root = make_folder(tmp_path / "skin", {"benign/cut.png": truncated_png})
    splits = load_dataset(f"folder:{root}")  # verify="exists": the file is there, not decoded
    for name in ("train", "val", "test"):
        dataset = splits.split(name)
        if str(root / "benign" / "cut.png") in dataset.images.paths:
            break
    with pytest.raises(DataError) as err:
        dataset[dataset.images.paths.index(str(root / "benign" / "cut.png"))]
    text = str(err.value)
    assert "cut.png: cannot decode" in text and f"class folder {root / 'benign'}" in text
    assert "--skip-bad" in text and "decodes every image when the dataset is loaded" in text
    with pytest.raises(DataError, match="cannot decode"):  # and decode= finds it at load time
        load_dataset(f"folder:{root}", verify="decode")


def test_a_file_that_breaks_after_a_decoded_load_says_so(tmp_path):
    root = make_folder(tmp_path / "skin", {})
    splits = load_dataset(f"folder:{root}", skip_bad=True)
    truncated_png(splits.train.images.paths[0])
    with pytest.raises(DataError, match="decoded when the dataset was loaded, so the file has "
                                        "changed since") as err:
        splits.train[0]
    assert "--skip-bad" not in str(err.value)


def test_skip_bad_leaves_a_dicom_bomb_out(tmp_path):
    root = make_folder(tmp_path / "cxr", {"malignant/bomb.dcm": dicom_bomb})
    with pytest.warns(UserWarning, match="skipped 1 bad item") as caught:
        splits = load_dataset(f"folder:{root}", skip_bad=True)
    assert "bomb.dcm" in str(caught[0].message) and "above the limit" in str(caught[0].message)
    assert str(root / "malignant" / "bomb.dcm") not in all_paths(splits)
    with pytest.raises(DataError, match="20000x20000 = 400,000,000 pixels"):
        load_dataset(f"folder:{root}", verify="decode")


def test_skip_bad_through_training_leaves_the_bad_images_out_and_without_it_the_run_stops(tmp_path, monkeypatch):
    """The real ``finetune`` on split folders with 24 good and 2 corrupt training images:
    with skip_bad the run completes, the warning names both files, the run's summary counts
    them, and the optimiser sees exactly the 24 good images (counted batch by batch); without it
    the run stops at the first corrupt image with an error naming it and the --skip-bad advice."""
    root = tmp_path / "skin"
    write_split_folders(root, {"train": {"benign": 12, "malignant": 12}, "val": {"benign": 4, "malignant": 4},
                               "test": {"benign": 4, "malignant": 4}})
    bad = {str(truncated_png(root / "train" / "benign" / "cut.png")),
           str(garbage_dicom(root / "train" / "malignant" / "junk.dcm"))}
    trained_on = []
    real_loss = ClassifierJob.loss

    def counting(job, batch):
        trained_on.append(len(batch[0]))
        return real_loss(job, batch)

    monkeypatch.setattr(ClassifierJob, "loss", counting)

    def config(skip_bad: bool) -> RunConfig:
        run = tiny_run("lora", epochs=1, batch_size=8)  # 24 good training images: 3 steps
        return dataclasses.replace(run, data=dataclasses.replace(run.data, spec=f"folder:{root}", skip_bad=skip_bad))

    shown = io.StringIO()
    with pytest.warns(UserWarning, match="skipped 2 bad item") as caught:
        metrics = finetune(config(True), tmp_path / "run", console=Console(file=shown, width=200), progress=False)
    message = "\n".join(str(w.message) for w in caught)
    assert all(path in message for path in bad), message
    assert "skipped 2 bad item(s) (--skip-bad)" in shown.getvalue()
    assert metrics["train_size"] == 24 and metrics["steps"] == 3
    assert sum(trained_on) == 24, trained_on
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()

    trained_on.clear()
    with pytest.raises(DataError) as err:
        finetune(config(False), tmp_path / "strict", console=QUIET, progress=False)
    text = str(err.value)
    assert any(f"{path}:" in text for path in bad), text
    assert "--skip-bad" in text
    assert trained_on, "the corrupt image is met in training, once a batch holds it"
    assert not (tmp_path / "strict" / "metrics.json").exists()
