"""The HTTP API in process (FastAPI's TestClient): answers equal `medpeft predict`'s for PNG and
DICOM uploads, listings, explanations, metrics, and every limit answered with its 4xx, never a 500."""
from __future__ import annotations

import csv
import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medpeft.inference import predict_files
from medpeft.serve.app import create_app
from medpeft.serve.config import ServeConfig
from medpeft.serve.pool import AdapterPool

from ..runs import write_dicom, write_png

SERVED = ("pneu-lora", "breast-lora", "pneu-bitfit")


@pytest.fixture(scope="module")
def pool(served_runs):
    return AdapterPool.load({name: served_runs[name] for name in SERVED})


@pytest.fixture(scope="module")
def client(pool):
    with TestClient(create_app(pool, ServeConfig(max_upload_mb=0.01)), raise_server_exceptions=False) as client:
        yield client


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height 8-bit grey pixels, with one tiny compressed row:
    what a decompression bomb looks like before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_models_are_listed_with_labels_backbone_and_trainable_counts(client, pool):
    body = client.get("/v1/models").json()
    models = {m["name"]: m for m in body["models"]}
    assert list(models) == list(SERVED)
    assert models["pneu-lora"]["labels"] == ["pneumonia"] and models["pneu-lora"]["task"] == "binary"
    assert models["breast-lora"]["classes"] == ["malignant", "normal, benign"]
    for name, info in models.items():
        assert info["backbone"]["name"] == "vit_tiny" and info["backbone"]["img_size"] == 28
        assert 0 < info["trainable_params"] < info["total_params"]
        assert info["trainable_params"] == pool.runs[name].trainable_params
    assert models["breast-lora"]["trainable_params"] < models["pneu-lora"]["trainable_params"]  # rank 4 < 8
    assert body["memory"]["bases"] == 1 and body["memory"]["tensor_bytes"] < body["memory"]["full_models_tensor_bytes"]
    assert client.get("/v1/models/pneu-lora").json()["method"] == "lora"
    assert client.get("/health").json()["models"] == 3


@pytest.mark.parametrize("name", SERVED)
def test_answers_equal_medpeft_predicts_for_png_and_dicom(client, served_runs, xray_images, tmp_path, name):
    folder = tmp_path / "images"
    files = [write_png(folder / f"{i}.png", image) for i, image in enumerate(xray_images[:4])]
    files += [write_dicom(folder / f"{i}.dcm", image) for i, image in enumerate(xray_images[4:6], start=4)]
    predict_files(served_runs[name], [folder], tmp_path / "p.csv")
    expected = {row["path"]: row for row in read_rows(tmp_path / "p.csv")}
    for path in files:
        if path.suffix == ".png":  # the raw body
            response = client.post(f"/v1/models/{name}/predict", content=path.read_bytes(),
                                   headers={"Content-Type": "image/png", "X-Filename": path.name})
        else:  # a form, as the web page sends it
            response = client.post(f"/v1/models/{name}/predict", files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 200, response.text
        answer, row = response.json(), expected[str(path)]
        for label, probability in answer["probabilities"].items():
            assert probability == pytest.approx(float(row[f"prob_{label}"]), abs=1e-6)
            assert str(answer["decisions"][label]) == row[f"decision_{label}"]
        assert answer["prediction"] == row["prediction"] and answer["image"]["width"] == 28


def test_explain_returns_the_overlay_and_the_image_as_png(client, xray_images):
    response = client.post("/v1/models/pneu-lora/predict?explain=true", content=png_bytes(xray_images[0]))
    explanation = response.json()["explanation"]
    assert explanation["method"] == "attention rollout"
    for key in ("overlay", "image"):
        import base64

        picture = Image.open(io.BytesIO(base64.b64decode(explanation[key].split(",", 1)[1])))
        assert picture.format == "PNG" and picture.size[0] == picture.size[1] >= 28


def test_every_limit_answers_its_4xx(client, xray_images):
    good = png_bytes(xray_images[0])
    predict = "/v1/models/pneu-lora/predict"
    cases = {
        "too large": (client.post(predict, content=good + b"\x00" * 20_000), 413, "limit of 10,485 bytes"),
        "too large form": (client.post(predict, files={"file": ("x.png", b"\x00" * 90_000)}), 413, "limit"),
        "bomb": (client.post(predict, content=png_header_only(20_000, 20_000)), 413, "400,000,000 pixels"),
        "not an image": (client.post(predict, content=b"hello, not an image"), 415, "not in a format"),
        "truncated": (client.post(predict, content=good[: len(good) // 2]), 422, "upload"),
        "bad dicom": (client.post(predict, content=b"\x00" * 200, headers={"X-Filename": "x.dcm"}), 422, "x.dcm"),
        "empty": (client.post(predict, content=b""), 400, "empty"),
        "form without file": (client.post(predict, data={"note": "x"}, files={"other": ("", b"")}), 400, "no file"),
        "unknown model": (client.post("/v1/models/nope/predict", content=good), 404, "pneu-lora"),
        "unknown listing": (client.get("/v1/models/nope"), 404, "nope"),
        "bad query": (client.post(predict + "?explain=maybe", content=good), 422, "explain"),
    }
    for case, (response, status, words) in cases.items():
        assert (response.status_code, case) == (status, case), response.text
        assert words in response.json()["error"], (case, response.json())
    metrics = client.get("/metrics").text
    assert 'medpeft_requests_total{model="",status="404"} 1' in metrics
    assert 'medpeft_requests_total{model="pneu-lora",status="413"} 3' in metrics
    assert 'status="500"' not in metrics


def test_an_api_key_guards_everything_but_health_and_the_page(pool, xray_images):
    with TestClient(create_app(pool, api_key="s3cret"), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
        predict = "/v1/models/pneu-lora/predict"
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer nope"}):
            response = client.post(predict, content=png_bytes(xray_images[0]), headers=headers)
            assert response.status_code == 401 and "API key" in response.json()["error"]
        assert client.get("/v1/models").status_code == client.get("/metrics").status_code == 401
        assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        ok = client.post(predict, content=png_bytes(xray_images[0]), headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and 0 <= ok.json()["probabilities"]["pneumonia"] <= 1


def test_requests_that_queue_while_the_model_runs_share_the_next_batches(pool, xray_images):
    """The first request holds the model; the rest, for three adapters, queue meanwhile and are
    scored in batches of max_batch when it is free (max_wait_ms=0: no timer helps them), each
    answer equal to its image scored alone."""
    import asyncio

    import httpx

    gated = GatedPool(pool)
    app = create_app(gated, ServeConfig(max_wait_ms=0, max_batch=8))
    bodies = [png_bytes(image) for image in xray_images]
    assert len(bodies) == 12

    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                        base_url="http://test") as http:
            def post(i):
                return asyncio.ensure_future(http.post(f"/v1/models/{SERVED[i % 3]}/predict", content=bodies[i]))

            requests = [post(0)]
            await until(gated.entered.is_set, "the first request in the model")
            requests += [post(i) for i in range(1, len(bodies))]
            await until(lambda: app.state.batcher.waiting == 11, "the other eleven requests queued")
            gated.release.set()
            return await asyncio.gather(*requests)

    answers = asyncio.run(send_all())
    assert [a.status_code for a in answers] == [200] * len(bodies)
    assert gated.sizes == [1, 8, 3]
    batches = app.state.stats.batch_sizes
    assert (batches.sum, batches.count) == (12, 3)
    for i, answer in enumerate(answers):
        run = pool.runs[SERVED[i % 3]]
        alone = run.predictor.scores(run.predictor.prepare(xray_images[i] / 255.0)[None])[0]
        assert list(answer.json()["probabilities"].values()) == pytest.approx(alone.tolist(), abs=1e-6)


def writes_during(call) -> list[str]:
    """Paths opened for writing (any thread: Python's audit hook sees open() and os.open()) while ``call`` runs."""
    import os
    import sys

    seen: list[str] = []
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    if not hasattr(writes_during, "hook"):  # audit hooks cannot be removed: one, switched by `active`
        writes_during.active = None
        def hook(event, args):
            if event == "open" and writes_during.active is not None:
                path, mode, flags = args
                if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & write):
                    writes_during.active.append(str(path))
        sys.addaudithook(hook)
        writes_during.hook = hook
    writes_during.active = seen
    try:
        call()
    finally:
        writes_during.active = None
    return seen


def test_nothing_uploaded_is_written_to_disk_unless_asked(pool, xray_images, tmp_path):
    import hashlib

    big = np.random.default_rng(0).integers(0, 255, (1120, 1120), dtype=np.uint8)
    body = png_bytes(big)  # a form part over 1 MB, where Starlette's own form parser would spool to a file
    assert len(body) > 1024 * 1024

    def post(client, name):
        response = client.post("/v1/models/pneu-lora/predict", files={"file": (name, body)})
        assert response.status_code == 200, response.text

    with TestClient(create_app(pool)) as client:
        assert writes_during(lambda: post(client, "big.png")) == []
    keep = tmp_path / "kept"
    with TestClient(create_app(pool, ServeConfig(save_uploads=str(keep)))) as client:
        written = writes_during(lambda: post(client, "x.png"))  # the control: the hook sees this write
    saved = keep / (hashlib.sha256(body).hexdigest() + ".png")
    assert written == [str(saved)] and saved.read_bytes() == body


async def until(condition, what: str):
    """Yield to the server until ``condition()`` holds; a safety net of 60,000 short sleeps (about
    a minute) turns a server that never gets there into a failure instead of a hang."""
    import asyncio

    for _ in range(60_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"the server never got to: {what}")


class GatedPool:
    """The pool, with each model call held until ``release`` is set (``entered`` tells it started)."""

    def __init__(self, pool):
        import threading

        self.pool, self.runs = pool, pool.runs
        self.entered, self.release = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def predict(self, items):
        self.sizes.append(len(items))
        self.entered.set()
        assert self.release.wait(60), "the test never released the model"
        return self.pool.predict(items)

    def memory(self):
        return self.pool.memory()


def test_a_full_queue_answers_503_with_retry_after(pool, xray_images):
    """One request in the model, one waiting (the limit): the next is refused, and the two answer."""
    import asyncio

    import httpx

    gated = GatedPool(pool)
    app = create_app(gated, ServeConfig(max_queue=1, max_batch=1, max_wait_ms=0))
    body = png_bytes(xray_images[0])

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                        base_url="http://test") as http:
            def post():
                return asyncio.ensure_future(http.post("/v1/models/pneu-lora/predict", content=body))

            first = post()
            await until(gated.entered.is_set, "the first request in the model")
            second = post()
            await until(lambda: app.state.batcher.waiting == 1, "the second request queued")
            refused = await post()
            gated.release.set()
            return refused, await first, await second

    refused, first, second = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "waiting for the model" in refused.json()["error"]
    assert first.status_code == second.status_code == 200
    assert 'medpeft_requests_total{model="pneu-lora",status="503"} 1' in app.state.stats.render(pool.memory(), 0, 3)
