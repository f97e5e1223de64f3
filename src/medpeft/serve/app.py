"""The HTTP API and the web page: a FastAPI application over an :class:`AdapterPool`.

    GET  /                              the web page (drop an image, choose a model)
    GET  /health                        {"status": "ok", ...}; never needs the API key
    GET  /metrics                       Prometheus text: requests, latency, batches, memory
    GET  /v1/models                     every run: name, task, labels, thresholds, method,
                                        backbone, base, trainable parameters, batching; memory
    GET  /v1/models/{name}              one run
    POST /v1/models/{name}/predict      an image (raw body or form field "file"); ?explain=true
                                        adds the heatmap overlay and the image as the model saw it

Every failure is a JSON ``{"error": message}`` with a 4xx status that says whose it is: 400 a
body without an image, 401 a missing or wrong API key, 404 an unknown model, 408 a body that did
not arrive within ``--body-timeout-s``, 413 an upload over ``--max-upload-mb`` or an image over
``--max-pixels`` (refused from its header, before decoding: decompression bombs; a baseline JPEG
is decoded at a reduced size instead, :func:`medpeft.serve.inputs.decode_reduced`), 415 bytes in
no image format medpeft reads, 422 an image that cannot be decoded (truncated, corrupt), 503 a
full queue or uploads in flight over ``--max-inflight-mb``. A client that disconnects at any
point before its answer (mid-body, or while its request waits for a decode slot, is decoded,
waits for the model or its explanation: :class:`~medpeft.serve.upload.ClientWatch`) is counted
as 499 and logged in one line. A 500 is a bug.

Memory is bounded whatever is uploaded: bodies by ``--max-inflight-mb`` in total, decoding by
``--max-pixels`` per image and ``--max-decodes`` at once (an asyncio semaphore); after decoding
only the model's input (and, for ``explain``, the picture at the model's size) is kept.

With an API key (``$MEDPEFT_API_KEY``), every route but ``/``, ``/health`` and the page's own
files needs it, as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. Uploads stay in
memory (:mod:`medpeft.serve.upload`) unless ``save_uploads`` names a folder.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..data.base import DataError, ImageTooLarge, UnsupportedImage
from ..data.decode import decode_image
from ..inference.explain import display_image, overlay
from .batcher import Batcher, Overloaded
from .config import ServeConfig
from .inputs import NotReducible, decode_reduced, input_warnings, read_header
from .pool import AdapterPool, ServedRun
from .stats import Stats
from .upload import CLIENT_GONE, BytesInFlight, ClientWatch, Held, Upload, UploadError, read_upload

log = logging.getLogger("medpeft.serve")


@dataclass
class Prepared:
    """What a request keeps after decoding: the model's input, not the full-size image."""

    inputs: torch.Tensor  # (3, S, S)
    height: int
    width: int
    scaling: str
    warnings: list[str]
    view: np.ndarray | None  # the image at the model's size (S, S, 3), for explain


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def create_app(pool: AdapterPool, config: ServeConfig | None = None, api_key: str | None = None) -> FastAPI:
    config = config or ServeConfig()
    stats = Stats()
    batcher = Batcher(pool.predict, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms,
                      max_queue=config.max_queue, on_batch=stats.batch)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="medpeft", summary="PEFT runs over one backbone", lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # the docs pages load scripts from a CDN
    app.state.pool, app.state.stats, app.state.batcher = pool, stats, batcher
    inflight = app.state.inflight = BytesInFlight(config.max_inflight_bytes)
    decodes = asyncio.Semaphore(config.max_decodes)
    _error_handlers(app)
    guard = Depends(_key_check(api_key))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(),
                            headers={"Cache-Control": "no-store"})

    @app.get("/health")
    def health():
        return {"status": "ok", "models": len(pool.runs), "uptime_s": round(time.time() - stats.started, 3)}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[guard])
    def metrics():
        return PlainTextResponse(stats.render(pool.memory(), batcher.waiting, len(pool.runs)),
                                 media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[guard])
    def list_models():
        return {"models": [run.describe() for run in pool.runs.values()], "memory": pool.memory(),
                "limits": {"max_upload_bytes": config.max_upload_bytes, "max_pixels": _pixel_limit(config),
                           "max_decodes": config.max_decodes, "max_inflight_bytes": config.max_inflight_bytes,
                           "body_timeout_s": config.body_timeout_s}}

    @app.get("/v1/models/{name}", dependencies=[guard])
    def one_model(name: str):
        return _served(pool, name).describe()

    @app.post("/v1/models/{name}/predict", dependencies=[guard])
    async def predict(name: str, request: Request, explain: bool = False):
        start, status, watch = time.perf_counter(), 500, None
        try:
            run = _served(pool, name)
            with inflight.hold() as held:
                upload = await _read(request, config, held)
                watch = ClientWatch(request)  # from here on a disconnect is seen wherever the request waits
                if config.save_uploads:
                    await run_in_threadpool(_save, upload, Path(config.save_uploads))
                # at most max_decodes images are being decoded at once; a running decode is not cut short
                await watch.race(decodes.acquire(), "while its image waited to be decoded")
                try:
                    watch.check("before its image was decoded")
                    prepared = await run_in_threadpool(_prepare, run, upload, config, explain)
                finally:
                    decodes.release()
                watch.check("while its image was decoded")
                filename = upload.filename
                del upload  # the body's bytes go now, not when the answer is sent
            try:
                scores = await watch.race(batcher.submit(name, prepared.inputs), "while it waited for the model")
            except Overloaded as err:
                raise ApiError(503, str(err), {"Retry-After": "1"}) from None
            answer = {"model": name, **run.predictor.outputs.record(scores),
                      "image": {"name": filename, "height": prepared.height, "width": prepared.width,
                                "scaling": prepared.scaling},
                      "warnings": prepared.warnings}
            if explain:
                answer["explanation"] = await watch.race(
                    batcher.run_alone(_explain, run, prepared.inputs, scores, prepared.view),
                    "while its explanation was computed")
            watch.check("before its answer was sent")
            status = 200
            return answer
        except (ApiError, UploadError) as err:
            status = err.status
            if status == CLIENT_GONE:
                client = request.client.host if request.client else "?"
                log.warning("client %s went away: %s (%s %s; counted as 499)", client, err,
                            request.method, request.url.path)
            if isinstance(err, UploadError):
                raise ApiError(err.status, str(err), err.headers) from None
            raise
        finally:
            if watch is not None:
                watch.close()
            stats.request(name if name in pool.runs else "", status, time.perf_counter() - start)

    return app


def _served(pool: AdapterPool, name: str) -> ServedRun:
    if name not in pool.runs:
        raise ApiError(404, f"no model named {name!r}; this server has: {', '.join(sorted(pool.runs))} "
                            "(GET /v1/models)")
    return pool.runs[name]


async def _read(request: Request, config: ServeConfig, held: Held) -> Upload:
    try:
        return await read_upload(request, config.max_upload_bytes, held, config.body_timeout_s)
    except UploadError as err:
        raise ApiError(err.status, str(err), err.headers) from None


def _prepare(run: ServedRun, upload: Upload, config: ServeConfig, explain: bool) -> Prepared:
    """Decode as training does (the serving pixel limit checked on the header first: a baseline
    JPEG above it is decoded at a reduced size, anything else refused), then the run's transform;
    keeps only what the answer needs."""
    header = read_header(upload.data, upload.filename)
    limit, img_size = config.max_pixels, run.predictor.config.backbone.img_size
    scaling = header.scaling if header else "unknown"
    try:
        if header is not None and limit is not None and header.width * header.height > limit:
            try:
                image, reduction = decode_reduced(upload.data, upload.filename, limit, img_size)
            except NotReducible as why:
                raise ApiError(413, f"{upload.filename}: the image is {header.width}x{header.height} = "
                                    f"{header.width * header.height:,} pixels, above this server's limit of "
                                    f"{limit:,} (medpeft serve --max-pixels), so it was not decoded ({why}); the "
                                    f"model looks at {img_size}x{img_size} pixels: downscale the image before "
                                    "sending it") from None
            size = header.height, header.width  # the upload's own size; the model saw the reduced image
            scaling += (f"; a {header.width}x{header.height} JPEG above the server's pixel limit, decoded at "
                        f"1/{reduction} of its size ({image.shape[1]}x{image.shape[0]}, libjpeg's DCT scaling)")
        else:
            image = decode_image(upload.data, upload.filename)
            size = image.shape[:2]
    except ImageTooLarge as err:
        raise ApiError(413, str(err)) from None
    except UnsupportedImage as err:
        raise ApiError(415, str(err)) from None
    except DataError as err:
        raise ApiError(422, str(err)) from None
    warnings = input_warnings(image, run.reference, img_size)
    view = display_image(image, img_size) if explain else None
    return Prepared(run.predictor.prepare(image), *size, scaling, warnings, view)


def _explain(run: ServedRun, inputs: torch.Tensor, scores: np.ndarray, view: np.ndarray) -> dict:
    heat, explainer, targets = run.predictor.heatmaps(inputs[None], scores[None])
    return {"method": explainer, "of": "all labels" if explainer == "attention rollout" else targets[0],
            "overlay": _png_data_url(overlay(view, heat[0])),
            "image": _png_data_url(Image.fromarray(np.round(view * 255).astype(np.uint8)))}


def _png_data_url(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _save(upload: Upload, folder: Path) -> None:
    """Keep an upload (asked for with save_uploads), named by its content: <sha256><suffix>."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(upload.filename).suffix.lower()
    suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 8 else ".bin"
    (folder / f"{hashlib.sha256(upload.data).hexdigest()}{suffix}").write_bytes(upload.data)


def _pixel_limit(config: ServeConfig) -> int | None:
    from ..data.decode import max_image_pixels

    limits = [limit for limit in (config.max_pixels, max_image_pixels()) if limit is not None]
    return min(limits) if limits else None


def _key_check(api_key: str | None):
    expected = api_key.encode() if api_key else None

    def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("x-api-key", "")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not given and scheme.lower() == "bearer":
            given = token.strip()
        if not given or not hmac.compare_digest(given.encode(), expected):
            raise ApiError(401, "a valid API key is needed: send it as 'X-API-Key: <key>' or "
                                "'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"})

    return check


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request, err: ApiError):
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, err: StarletteHTTPException):
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(Exception)
    async def bug(_request, err: Exception):
        log.exception("internal error")
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server's log"},
                            status_code=500)
