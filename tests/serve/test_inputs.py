"""What the answer says besides the decision: how the image was scaled to [0, 1] (PNG /255, DICOM
window, DICOM min-max when the file has no window), warnings for an input far from the training
images (a 1x1 PNG, a uniform image, intensities far from the training set's) while the decision
stays, and the run's card (task, labels, test AUROC with its CI, training data)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from medpeft.serve.app import create_app
from medpeft.serve.config import ServeConfig
from medpeft.serve.pool import AdapterPool

from ..runs import write_dicom
from .test_app import png_bytes


@pytest.fixture(scope="module")
def client(served_runs):
    pool = AdapterPool.load({"pneu-lora": served_runs["pneu-lora"]})
    with TestClient(create_app(pool, ServeConfig()), raise_server_exceptions=False) as client:
        yield client


def predict(client, data: bytes, name: str = "x.png") -> dict:
    response = client.post("/v1/models/pneu-lora/predict", content=data, headers={"X-Filename": name})
    assert response.status_code == 200, response.text
    return response.json()


def unwindowed_dicom(path, pixels):
    import pydicom

    write_dicom(path, pixels)
    ds = pydicom.dcmread(path)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(path)
    return path


def test_the_answer_says_how_the_image_was_scaled(client, xray_images, tmp_path):
    assert predict(client, png_bytes(xray_images[0]))["image"]["scaling"] == "8-bit values divided by 255"
    windowed = predict(client, write_dicom(tmp_path / "a.dcm", xray_images[0]).read_bytes(), "a.dcm")
    assert windowed["image"]["scaling"].startswith("DICOM window from the file (centre 128, width 256)")
    stretched = predict(client, unwindowed_dicom(tmp_path / "b.dcm", xray_images[0]).read_bytes(), "b.dcm")
    assert stretched["image"]["scaling"].startswith("DICOM min-max")
    sixteen = predict(client, png_bytes(np.uint16(xray_images[0]) * 257))  # a 16-bit PNG
    assert "divided by 65535" in sixteen["image"]["scaling"]


def test_inputs_far_from_the_training_images_are_flagged_and_still_answered(client, xray_images):
    normal = predict(client, png_bytes(xray_images[0]))
    assert normal["warnings"] == []
    tiny = predict(client, png_bytes(np.array([[128]], dtype=np.uint8)))
    assert any("1x1 pixels" in w for w in tiny["warnings"]) and tiny["prediction"]  # the decision stays
    white = predict(client, png_bytes(np.full((28, 28), 255, dtype=np.uint8)))
    assert any("uniform" in w for w in white["warnings"]) and any("mean intensity 1.000" in w for w in white["warnings"])
    noise = np.random.default_rng(0).integers(0, 2, (28, 28), dtype=np.uint8) * 255  # std 0.5: no X-ray is
    assert any("standard deviation" in w for w in predict(client, png_bytes(noise))["warnings"])


def test_the_model_card_has_task_labels_test_auroc_and_training_data(client, served_runs):
    card = client.get("/v1/models/pneu-lora").json()["card"]
    metrics = json.loads((served_runs["pneu-lora"] / "metrics.json").read_text())
    assert card["task"] == "binary" and card["labels"] == ["pneumonia"]
    assert card["test"]["auroc"] == pytest.approx(metrics["test"]["auroc"]) and card["test"]["n"] == 624
    assert card["test"]["auroc_ci95"] == metrics["test"].get("auroc_ci95")
    assert card["training_data"]["spec"] == "medmnist:pneumoniamnist" and card["training_data"]["images"] > 0
    reference = card["input_reference"]
    assert reference["images"] == 256 and 0.3 < reference["mean"][0] < 0.7 and reference["min_side"] == 28
