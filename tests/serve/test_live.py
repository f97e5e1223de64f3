"""The API over TCP, served by uvicorn in its own process (``medpeft serve``): the same answers as
`medpeft predict`, and each limit its 4xx through uvicorn's HTTP handling (declared and chunked
bodies), never a 500; the server keeps answering after them."""
from __future__ import annotations

import csv

import httpx
import pytest

from medpeft.inference import predict_files

from ..runs import write_dicom, write_png
from .test_app import png_bytes, png_header_only


def read_rows(path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize("name", ["pneu-lora", "breast-lora", "pneu-bitfit"])
def test_served_answers_equal_medpeft_predicts(live_server, served_runs, xray_images, tmp_path, name):
    files = [write_png(tmp_path / "a.png", xray_images[7]), write_dicom(tmp_path / "b.dcm", xray_images[8])]
    predict_files(served_runs[name], files, tmp_path / "p.csv")
    expected = read_rows(tmp_path / "p.csv")
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        raw = http.post(f"/v1/models/{name}/predict", content=files[0].read_bytes())
        form = http.post(f"/v1/models/{name}/predict", files={"file": ("b.dcm", files[1].read_bytes())})
    for path, response in zip(files, (raw, form)):
        assert response.status_code == 200, response.text
        row = expected[str(path)]
        for label, probability in response.json()["probabilities"].items():
            assert probability == pytest.approx(float(row[f"prob_{label}"]), abs=1e-6)
        assert response.json()["prediction"] == row["prediction"]


def test_limits_over_tcp_answer_4xx_and_the_server_goes_on(live_server, xray_images):
    good = png_bytes(xray_images[0])
    predict = "/v1/models/pneu-lora/predict"

    def chunked():  # no Content-Length: the server must count as it reads, and stop
        for _ in range(200):
            yield b"\x00" * 8192

    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        answers = {
            413: [http.post(predict, content=b"\x00" * 600_000), http.post(predict, content=chunked()),
                  http.post(predict, content=png_header_only(30_000, 30_000))],
            415: [http.post(predict, content=b"GIF? no: plain text")],
            422: [http.post(predict, content=good[:100])],
            404: [http.post("/v1/models/missing/predict", content=good)],
        }
        for status, responses in answers.items():
            for response in responses:
                assert response.status_code == status, response.text
                assert response.json()["error"]
        after = http.post(predict, content=good)
        assert after.status_code == 200 and 0 <= after.json()["probabilities"]["pneumonia"] <= 1
        metrics = http.get("/metrics").text
    assert 'status="500"' not in metrics and 'medpeft_requests_total{model="pneu-lora",status="413"} 3' in metrics
