"""Bounded memory and clean endings over TCP, against a real ``medpeft serve`` process, one test per
fault class: a stalled body (408 after --body-timeout-s, its bytes let go), a client that disconnects
mid-body (499 in the metrics, one log line, no traceback, never a 500), bodies in flight over
--max-inflight-mb (503 with Retry-After), an image over the serving pixel limit (413 from its
header, never decoded), a baseline JPEG over it (decoded at a reduced size by Pillow's draft mode
and answered; a progressive one refused), and the load of the issue: 20 concurrent 9000x9000 PNGs
plus 40 stalled bodies keep the server's peak resident memory (VmHWM) within a stated bound, and it
answers after."""
from __future__ import annotations

import io
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ..runs import write_dicom
from .live import LiveServer
from .test_app import png_bytes

TIMEOUT_S = 1.5
INFLIGHT_MB = 64
BOUND_MIB = 200  # VmHWM after the load may exceed the RSS before it by at most this much (stated in docs/serving.md)


@pytest.fixture(scope="module")
def server(served_runs, tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "serve.log"
    live = LiveServer({"pneu-lora": served_runs["pneu-lora"]}, "--threads", "1", "--max-upload-mb", "20",
                      "--max-inflight-mb", str(INFLIGHT_MB), "--body-timeout-s", str(TIMEOUT_S),
                      "--max-decodes", "2", log=log)
    try:
        yield live.wait_ready()
    finally:
        live.stop()


def status_of(process_pid: int, field: str) -> int:
    """VmRSS / VmHWM of a process, in bytes, from /proc/<pid>/status."""
    text = Path(f"/proc/{process_pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M)[1]) * 1024


def open_body(server, declared: int, sent: bytes = b"abc") -> socket.socket:
    """A raw request that declares ``declared`` body bytes and sends only ``sent``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /v1/models/pneu-lora/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                 + f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return sock


def answer_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]), data


def metric(server, status: int) -> int:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.search(rf'medpeft_requests_total{{model="pneu-lora",status="{status}"}} (\d+)', text)
    return int(found[1]) if found else 0


def big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (9000, 9000), 40).save(buffer, format="PNG")  # ~80 KB on the wire, 81 M pixels
    return buffer.getvalue()


def big_jpeg(side: int = 4200, progressive: bool = False) -> bytes:
    """A smooth side x side grey photo as JPEG: over the default --max-pixels (4096 x 4096), a few
    hundred KB on the wire."""
    gradient = Image.linear_gradient("L").resize((side, side), Image.BILINEAR)
    buffer = io.BytesIO()
    gradient.save(buffer, format="JPEG", quality=80, progressive=progressive)
    return buffer.getvalue()


def test_a_baseline_jpeg_over_the_pixel_limit_is_decoded_at_a_reduced_size(server):
    body = big_jpeg()
    with Image.open(io.BytesIO(body)) as image:  # what the model should see: Pillow's 1/8 decode
        image.draft("L", (28, 28))
        reduced = io.BytesIO()
        image.save(reduced, format="PNG")
    assert image.size == (525, 525)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        big = http.post("/v1/models/pneu-lora/predict", content=body, headers={"X-Filename": "photo.jpg"})
        small = http.post("/v1/models/pneu-lora/predict", content=reduced.getvalue())
    assert big.status_code == 200, big.text
    answer = big.json()
    assert answer["image"]["width"] == answer["image"]["height"] == 4200
    assert "decoded at 1/8 of its size (525x525" in answer["image"]["scaling"]
    assert answer["image"]["scaling"].startswith("8-bit values divided by 255")
    assert small.status_code == 200
    assert answer["probabilities"]["pneumonia"] == pytest.approx(small.json()["probabilities"]["pneumonia"], abs=1e-6)


def test_a_progressive_jpeg_png_or_dicom_over_the_pixel_limit_is_refused_with_the_reason(server, tmp_path):
    import pydicom

    dicom = write_dicom(tmp_path / "big.dcm", np.zeros((28, 28), np.uint8))
    ds = pydicom.dcmread(dicom)
    ds.Rows = ds.Columns = 5000  # what the header says is what counts
    ds.save_as(dicom)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        progressive = http.post("/v1/models/pneu-lora/predict", content=big_jpeg(progressive=True))
        png = http.post("/v1/models/pneu-lora/predict", content=big_png())
        dcm = http.post("/v1/models/pneu-lora/predict", content=dicom.read_bytes(), headers={"X-Filename": "big.dcm"})
    assert progressive.status_code == png.status_code == dcm.status_code == 413
    message = progressive.json()["error"]
    assert "4200x4200" in message and "progressive JPEG" in message and "--max-pixels" in message
    for refused, size in ((png, "9000x9000"), (dcm, "5000x5000")):
        assert size in refused.json()["error"] and "only a baseline JPEG" in refused.json()["error"]
        assert "downscale" in refused.json()["error"]


def test_a_stalled_body_is_let_go_with_408(server):
    sock = open_body(server, 20 * 2**20)
    start = time.monotonic()
    status, head = answer_status(sock)
    sock.close()
    assert status == 408, head
    assert TIMEOUT_S - 0.1 < time.monotonic() - start < TIMEOUT_S + 5


def test_a_client_that_disconnects_mid_body_is_a_499_not_a_500(server):
    before = metric(server, 499)
    sock = open_body(server, 1000)
    time.sleep(0.3)
    sock.close()
    deadline = time.monotonic() + 10
    while metric(server, 499) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, 499) == before + 1 and metric(server, 500) == 0
    log = server.log.read_text()
    assert "Traceback" not in log and "internal error" not in log
    gone = [line for line in log.splitlines() if "went away" in line]
    assert gone and "1000" in gone[-1] and "3 of" in gone[-1]


def test_bodies_over_the_inflight_budget_answer_503_with_retry_after(server):
    held = [open_body(server, 20 * 2**20) for _ in range(INFLIGHT_MB // 20)]  # 60 of 64 MiB reserved
    time.sleep(0.3)
    try:
        over = open_body(server, 20 * 2**20)
        status, head = answer_status(over)
        over.close()
        assert status == 503 and b"retry-after: 1" in head.lower(), head
    finally:
        for sock in held:
            sock.close()


def test_an_image_over_the_serving_pixel_limit_is_refused_from_its_header(server):
    response = httpx.post(f"{server.url}/v1/models/pneu-lora/predict", content=big_png(), timeout=60)
    assert response.status_code == 413
    assert "9000x9000" in response.json()["error"] and "--max-pixels" in response.json()["error"]


def test_memory_stays_bounded_under_huge_images_and_stalled_bodies(server, xray_images):
    """The issue's load: 20 concurrent 9000x9000 uploads and 40 stalled 20 MB bodies."""
    pid = server.process.pid
    rss_before = status_of(pid, "VmRSS")
    body = big_png()
    stalled = []
    with ThreadPoolExecutor(20) as pool:
        for _ in range(40):
            try:
                stalled.append(open_body(server, 20 * 2**20))
            except OSError:
                pass
        answers = list(pool.map(lambda _: httpx.post(f"{server.url}/v1/models/pneu-lora/predict", content=body,
                                                     timeout=60).status_code, range(20)))
    statuses = [answer_status(sock)[0] for sock in stalled]
    for sock in stalled:
        sock.close()
    hwm = status_of(pid, "VmHWM")
    print(f"server RSS before {rss_before / 2**20:.0f} MiB, peak (VmHWM) after {hwm / 2**20:.0f} MiB")
    assert set(answers) <= {413, 503} and answers.count(413) >= 1
    assert set(statuses) <= {408, 503} and statuses.count(408) >= 1 and statuses.count(503) >= 1
    assert hwm - rss_before < BOUND_MIB * 2**20
    after = httpx.post(f"{server.url}/v1/models/pneu-lora/predict", content=png_bytes(xray_images[0]), timeout=60)
    assert after.status_code == 200 and 0 <= after.json()["probabilities"]["pneumonia"] <= 1
    assert metric(server, 500) == 0
