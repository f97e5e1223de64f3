"""A validation split with one class chooses the best epoch by validation loss, and that loss comes
from the same forward pass that scores the split: one pass per validation, as with an AUROC.

The loss of every validation is checked against a direct computation (the run's own loss
function over the validation images, with the model's weights of that epoch), and the chosen
epoch against the lowest of those losses."""
from __future__ import annotations

import csv
import math

import numpy as np
import torch
from PIL import Image
from timm.models.vision_transformer import VisionTransformer

from medpeft.runtime import DataConfig, RunConfig, TrainConfig, eval_loader, load_splits, resolve_run_config
from medpeft.train import finetune
from medpeft.train.optim import loss_function

from .tiny import QUIET, TINY_VIT


def one_class_validation_csv(folder) -> str:
    """24 training and 8 test images of both classes, 8 validation images all of class 0."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    splits = ["train"] * 24 + ["val"] * 8 + ["test"] * 8
    rows = []
    for i, split in enumerate(splits):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "img" / f"{i:03d}.png")
        rows.append((f"{i:03d}.png", 0 if split == "val" else i % 2, split))
    with open(folder / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return f"csv:{folder / 'data.csv'}?root={folder / 'img'}"


def test_the_validation_loss_comes_from_the_one_scoring_pass(tmp_path):
    config = RunConfig(data=DataConfig(spec=one_class_validation_csv(tmp_path)), backbone=TINY_VIT, method="lora",
                       train=TrainConfig(epochs=4, batch_size=8, eval_batch_size=3, n_bootstrap=0, lr=0.05,
                                         precision="fp32", feature_cache="off"))
    resolved = resolve_run_config(config)[0]  # the backbone's normalisation, as the run has it
    splits = load_splits(resolved.data, resolved.backbone)
    val_batches = eval_loader(splits.val, config.train)  # 8 images in batches of 3: 3 batches
    criterion = loss_function(splits.info.task)
    state = {"model": None, "eval_forwards": 0, "counting": True}
    passes, direct, reported = [], [], []

    def count(module, args, output):  # every eval-mode forward of the whole ViT
        if isinstance(module, VisionTransformer) and not module.training:
            state["model"] = module
            state["eval_forwards"] += state["counting"]

    def on_validation(epoch: int, val: dict) -> None:
        passes.append(state["eval_forwards"])
        state["counting"] = False
        model = state["model"]
        model.eval()
        total = 0.0
        with torch.no_grad():  # the run's loss, directly, with this epoch's weights
            for images, targets in val_batches:
                total += float(criterion(model(images).float(), targets)) * len(images)
        model.train()
        direct.append(total / len(splits.val))
        reported.append(val["loss"])
        state["counting"], state["eval_forwards"] = True, 0

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        metrics = finetune(config, tmp_path / "run", console=QUIET, progress=False, on_validation=on_validation)
    finally:
        handle.remove()
    history = metrics["history"]
    assert passes == [3, 3, 3, 3]  # one pass of 3 batches per validation (two passes were 6)
    assert [record["val_loss"] for record in history] == reported
    assert np.allclose(reported, direct, rtol=1e-6, atol=0)
    assert len(set(reported)) == 4  # the epochs differ, so the choice below means something
    assert metrics["best_epoch"] == int(np.argmin(direct)) + 1
    assert all(math.isnan(record["val_auroc"]) for record in history)
    assert "chosen by the lowest validation loss" in (tmp_path / "run" / "log.txt").read_text()


def test_a_two_class_validation_records_no_loss(tmp_path):
    """Runs whose validation has an AUROC are scored as before: no ``val_loss``, AUROC selection."""
    spec = one_class_validation_csv(tmp_path)
    table = tmp_path / "data.csv"
    lines = table.read_text().splitlines()
    lines[25] = lines[25].replace(",0,val", ",1,val")  # one validation positive
    table.write_text("\n".join(lines) + "\n")
    config = RunConfig(data=DataConfig(spec=spec), backbone=TINY_VIT, method="lora",
                       train=TrainConfig(epochs=2, batch_size=8, n_bootstrap=0, precision="fp32"))
    metrics = finetune(config, tmp_path / "run", console=QUIET, progress=False)
    history = metrics["history"]
    assert all("val_loss" not in record for record in history)
    aurocs = [record["val_auroc"] for record in history]
    assert not any(math.isnan(a) for a in aurocs)
    assert metrics["best_epoch"] == int(np.argmax(aurocs)) + 1
