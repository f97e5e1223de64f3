"""A client that disconnects after its body has arrived, while its request waits for the model,
against a real ``medpeft serve`` process: counted as 499 and logged in one line, never a 500 and
never a traceback; the abandoned request leaves the batcher's queue (no model call is made for it)
and the server answers the next request. (A disconnect mid-body: tests/serve/test_limits.py.)

The server waits ``--max-wait-ms`` for a batch to fill, so a lone request sits with the batcher
for seconds: the client closes its socket in that time."""
from __future__ import annotations

import re
import socket
import time

import httpx
import pytest

from .live import LiveServer
from .test_app import png_bytes
from .test_limits import metric

WAIT_MS = 5000  # how long the batcher waits for a batch to fill: the request's time with it


@pytest.fixture(scope="module")
def server(served_runs, tmp_path_factory):
    log = tmp_path_factory.mktemp("disconnect") / "serve.log"
    live = LiveServer({"pneu-lora": served_runs["pneu-lora"]}, "--threads", "1", "--max-wait-ms", str(WAIT_MS),
                      "--max-batch", "8", log=log)
    try:
        yield live.wait_ready()
    finally:
        live.stop()


def batches(server) -> int:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return int(re.search(r"^medpeft_batch_size_count (\d+)$", text, re.M)[1])


def test_a_client_that_disconnects_while_waiting_for_the_model_is_a_499(server, xray_images):
    body = png_bytes(xray_images[0])
    before, model_calls = metric(server, 499), batches(server)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /v1/models/pneu-lora/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # the whole body: it is read
    sent = time.monotonic()
    time.sleep(2.0)  # decoding a 28 x 28 PNG takes milliseconds; the batcher holds it for WAIT_MS
    sock.close()
    deadline = time.monotonic() + 10
    while metric(server, 499) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, 499) == before + 1 and metric(server, 500) == 0 and metric(server, 200) == 0
    assert time.monotonic() - sent < WAIT_MS / 1000  # seen when it happened, not when the model got to it
    log = server.log.read_text()
    assert "Traceback" not in log and "internal error" not in log
    gone = [line for line in log.splitlines() if "went away" in line]
    assert len(gone) == 1 and "while it waited for the model" in gone[0] and "counted as 499" in gone[0]
    time.sleep(WAIT_MS / 1000)  # past the batch window: the abandoned request was dropped, not scored
    assert batches(server) == model_calls
    after = httpx.post(f"{server.url}/v1/models/pneu-lora/predict", content=body, timeout=60)
    assert after.status_code == 200 and 0 <= after.json()["probabilities"]["pneumonia"] <= 1
    assert batches(server) == model_calls + 1 and metric(server, 499) == before + 1
