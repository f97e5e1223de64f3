"""`medpeft predict`: folders of PNG and DICOM, bad files listed and skipped, the same answers as
`medpeft eval` on the run's own test images, heatmaps, and the decision rule of RunOutputs."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from medpeft.cli import main
from medpeft.data import load_dataset
from medpeft.inference import PredictConfig, RunOutputs, evaluate_run, gather_images, predict_files
from medpeft.runtime import compute_metrics

from ..runs import SYNTHETIC, VIT16, train, write_dicom, write_png


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """LoRA on the tiny multilabel synthetic set: five labels, thresholds chosen on validation."""
    return train(tmp_path_factory.mktemp("predict") / "run", data=SYNTHETIC, backbone=VIT16, steps=4)


@pytest.fixture(scope="module")
def test_split():
    return load_dataset(SYNTHETIC).test


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_folder_of_png_and_dicom_with_a_corrupt_file(run, test_split, tmp_path, capsys):
    folder = tmp_path / "incoming"
    for i in range(3):
        write_png(folder / f"img{i}.png", test_split.images.array[i])
    write_dicom(folder / "ct" / "scan.dcm", test_split.images.array[3])
    write_dicom(folder / "ct" / "IM0001", test_split.images.array[4])  # DICOM exports often lack a suffix
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "notes.txt").write_text("not an image, and not named like one: listed as skipped")
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run), str(folder), "--out", str(out), "--no-progress"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    rows = read_rows(out)
    assert sorted(r["path"].split("incoming/")[1] for r in rows) == [
        "ct/IM0001", "ct/scan.dcm", "img0.png", "img1.png", "img2.png"]
    assert "5 image(s) predicted" in printed and "skipped 2 file(s)" in printed and "notes.txt" in printed
    assert "broken.png" in printed and "cannot decode" in printed
    labels = json.loads((run / "adapter_config.json").read_text())["labels"]
    assert list(rows[0]) == ["path", *[f"prob_{k}" for k in labels], *[f"decision_{k}" for k in labels], "prediction"]


def test_predictions_equal_evals_on_the_runs_own_test_images(run, test_split, tmp_path):
    files = [write_png(tmp_path / "test" / f"{i:03d}.png", image) for i, image in enumerate(test_split.images.array)]
    summary = predict_files(run, [tmp_path / "test"], tmp_path / "p.csv", PredictConfig(batch_size=7))
    assert summary.rows == len(files) and not summary.skipped
    rows = read_rows(tmp_path / "p.csv")
    assert [r["path"] for r in rows] == [str(f) for f in files]
    labels = json.loads((run / "adapter_config.json").read_text())["labels"]
    scores = np.array([[float(r[f"prob_{k}"]) for k in labels] for r in rows])
    saved = np.load(run / "predictions-test.npz")  # what training scored on the test split
    np.testing.assert_allclose(scores, saved["scores"], atol=1e-6)
    evaluated = evaluate_run(run, n_bootstrap=0)
    ours = compute_metrics(scores, saved["labels"], "multilabel", labels, thresholds=evaluated["thresholds"])
    assert ours["auroc"] == pytest.approx(evaluated["auroc"], abs=1e-6)
    assert ours["acc_at_val_threshold"] == pytest.approx(evaluated["acc_at_val_threshold"])
    decided = np.array([[int(r[f"decision_{k}"]) for k in labels] for r in rows])
    expected = (scores >= np.array([evaluated["thresholds"][k] for k in labels])).astype(int)
    np.testing.assert_array_equal(decided, expected)


def test_a_dicom_and_a_png_of_the_same_pixels_get_the_same_answer(run, test_split, tmp_path):
    pixels = test_split.images.array[5]
    png, dicom = write_png(tmp_path / "a.png", pixels), write_dicom(tmp_path / "a.dcm", pixels)
    predict_files(run, [png, dicom], tmp_path / "p.csv")
    first, second = read_rows(tmp_path / "p.csv")
    assert [v for k, v in first.items() if k != "path"] == [v for k, v in second.items() if k != "path"]


def test_explain_writes_one_overlay_per_image(run, test_split, tmp_path):
    files = [write_png(tmp_path / "in" / name / "x.png", test_split.images.array[i])
             for i, name in enumerate(["a", "b"])]  # the same file name in two folders
    summary = predict_files(run, files, tmp_path / "p.csv", PredictConfig(explain=True))
    rows = read_rows(tmp_path / "p.csv")
    maps = [row["heatmap"] for row in rows]
    assert summary.heatmaps == tmp_path / "p-heatmaps" and len(set(maps)) == 2
    for path in maps:
        with Image.open(path) as picture:
            assert picture.mode == "RGB" and picture.size == (256, 256)
    assert {row["heatmap_of"] for row in rows} == {"all labels (attention rollout)"}


def test_no_readable_image_is_a_clear_error(run, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert main(["predict", str(run), str(tmp_path / "missing"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "no image files in" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "bad.png"), "--out", str(tmp_path / "p.csv")]) == 2
    text = " ".join(capsys.readouterr().err.split())
    assert "none of the 1 files could be read" in text and "Traceback" not in text
    assert not (tmp_path / "p.csv").exists()


def test_folders_are_searched_for_image_suffixes_and_suffixless_files(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.dcm", "sub/IM0001", ".hidden/d.png", "e.txt", "f.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files, problems = gather_images([tmp_path, tmp_path / "nowhere"])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.JPG", "b.png", "sub/IM0001", "sub/c.dcm"]
    assert dict(problems) == {str(tmp_path / ".hidden"): "hidden folder, not searched",
                              str(tmp_path / "e.txt"): "suffix .txt is not an image type "
                                                       "(.png .jpg .jpeg .dcm .dicom .tif .tiff .bmp)",
                              str(tmp_path / "f.csv"): "suffix .csv is not an image type "
                                                       "(.png .jpg .jpeg .dcm .dicom .tif .tiff .bmp)",
                              str(tmp_path / "nowhere"): "not found"}


@pytest.mark.parametrize("task, adapter, scores, prediction", [
    ("binary", {"labels": ["pneumonia"], "label_names": ["normal", "pneumonia"]}, [0.4], "pneumonia"),
    ("binary", {"labels": ["pneumonia"], "label_names": ["normal", "pneumonia"]}, [0.39], "normal"),
    ("binary", {"labels": ["pneumonia"]}, [0.39], "not pneumonia"),  # saved before label_names were
    ("multilabel", {"labels": ["a", "b", "c"]}, [0.4, 0.2, 0.9], ["a", "c"]),
    ("multiclass", {"labels": ["x", "y", "z"]}, [0.2, 0.5, 0.3], "y"),
])
def test_run_outputs_decide_as_training_chose(task, adapter, scores, prediction):
    thresholds = {"pneumonia": 0.4, "a": 0.4, "b": 0.5, "c": 0.5} if task != "multiclass" else None
    labels = adapter["labels"]
    outputs = RunOutputs.from_adapter({**adapter, "task": task, "num_outputs": 1 if task == "binary" else 3},
                                      {k: thresholds[k] for k in labels} if thresholds else None)
    answer = outputs.record(np.array(scores, dtype=np.float32))
    assert answer["prediction"] == prediction  # score >= threshold is positive, as the thresholds were chosen
    assert ("decisions" in answer) == (task != "multiclass")
    assert list(answer["probabilities"]) == labels


def test_run_outputs_need_a_threshold_per_label():
    with pytest.raises(ValueError, match="needs one decision threshold per label"):
        RunOutputs("multilabel", ("a", "b"), ("a", "b"), {"a": 0.5})
