"""Reading an uploaded image into memory, bounded, and never onto disk.

Two ways to send an image: the raw bytes as the request body (``curl --data-binary @x.png``,
the file name optionally in ``X-Filename``), or a ``multipart/form-data`` form with the file in
a field named ``file`` (``curl -F file=@x.dcm``, an HTML form). The body is read chunk by chunk
and refused (413) as soon as it passes the limit, so a client cannot make the server hold more
than the limit; a declared ``Content-Length`` above it is refused before reading anything.

Forms are parsed here with python-multipart's streaming parser into memory, not through
Starlette's ``request.form()``, whose parts roll over to temporary files above 1 MB: nothing
uploaded is written to disk unless ``--save-uploads`` asks for it.

Bounded in time and in total, too: all requests' bodies together may hold at most
``max_inflight_mb`` (:class:`BytesInFlight`; a declared ``Content-Length`` is reserved before
reading, so 40 clients that declare 20 MB and stall cannot park 800 MB: beyond the budget they
get 503 with ``Retry-After``); a body must arrive within ``body_timeout_s`` (408, and its bytes
are let go); a client that disconnects mid-body is a 499 (:class:`UploadError` with status 499),
never a server error.

After the body, :class:`ClientWatch` watches the connection for the rest of the request's life
(waiting for a decode slot, decoding, waiting for the model, the explanation): a client that
disconnects there is a 499 too, and what it waited for is given up where that is safe (a queued
request leaves the batcher's queue; a decode already running finishes, to keep its slot honest).
"""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

FORM_FIELD = "file"
FORM_OVERHEAD = 64 * 1024  # room for a form's boundaries and part headers beyond the file itself


CLIENT_GONE = 499  # nginx's code for "the client closed the connection before the answer"


class UploadError(Exception):
    """A request whose body cannot be used: ``status`` is the HTTP answer (400, 408, 413, 499, 503)."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


class BytesInFlight:
    """The bytes all request bodies may hold at once; each request reserves through its :class:`Held`.

    Used from the event loop only (one thread), so a plain counter is enough."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    @contextmanager
    def hold(self):
        held = Held(self)
        try:
            yield held
        finally:
            held.release()


class Held:
    """One request's share of :class:`BytesInFlight`."""

    def __init__(self, budget: BytesInFlight):
        self.budget, self.bytes = budget, 0

    def reserve(self, total: int) -> None:
        """Hold ``total`` bytes for this request (503 with Retry-After when the budget has no room)."""
        extra = total - self.bytes
        if extra <= 0:
            return
        if self.budget.held + extra > self.budget.limit:
            raise UploadError(503, f"the server holds {self.budget.held:,} bytes of uploads in flight and "
                                   f"{extra:,} more would pass its limit of {self.budget.limit:,} "
                                   "(medpeft serve --max-inflight-mb); retry shortly", {"Retry-After": "1"})
        self.budget.held += extra
        self.bytes = total

    def release(self) -> None:
        self.budget.held -= self.bytes
        self.bytes = 0


class ClientWatch:
    """Watches one request's connection after its body has arrived (the ASGI ``receive`` then only
    says ``http.disconnect``): :meth:`race` gives up an awaitable when the client leaves first,
    :meth:`check` asks between steps. Both raise :class:`UploadError` 499 naming the step."""

    def __init__(self, request: Request):
        self.request, self.loop = request, asyncio.get_running_loop()
        self.since = self.loop.time()
        self.task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> bool:
        try:
            while (await self.request.receive())["type"] != "http.disconnect":
                pass  # nothing else comes after the body; a disconnect is what we wait for
        except Exception:  # noqa: BLE001 - a server that cannot tell: never count the client as gone
            return False
        return True

    @property
    def gone(self) -> bool:
        return self.task.done() and not self.task.cancelled() and self.task.result()

    def check(self, step: str) -> None:
        if self.gone:
            raise UploadError(CLIENT_GONE, f"the client disconnected {step}, "
                                           f"{self.loop.time() - self.since:.2f} s after its body arrived")

    async def race(self, awaitable, step: str):
        """``await awaitable``, unless the client disconnects first: then it is cancelled and 499 raised."""
        work = asyncio.ensure_future(awaitable)
        work.add_done_callback(lambda task: task.cancelled() or task.exception())  # never "not retrieved"
        try:
            done, _ = await asyncio.wait({work, self.task}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done and not self.gone:
                await asyncio.wait({work})  # the watch itself ended without a disconnect: just wait
        except asyncio.CancelledError:
            work.cancel()
            raise
        if not work.done():  # the client left first (the watch ended with a disconnect)
            work.cancel()  # cancel-safe where used: a semaphore's acquire, a queued request, an executor job
            self.check(step)
        return work.result()

    def close(self) -> None:
        self.task.cancel()


@dataclass
class Upload:
    data: bytes
    filename: str  # the client's name for the file ("upload" when it gave none)
    content_type: str


async def read_upload(request: Request, limit: int, held: Held | None = None, timeout: float | None = None) -> Upload:
    """The image in ``request``'s body (raw or a multipart form), at most ``limit`` bytes, reserved
    in ``held`` as it arrives, the whole body within ``timeout`` seconds."""
    content_type = request.headers.get("content-type", "application/octet-stream")
    kind, options = parse_options_header(content_type)
    is_form = kind == b"multipart/form-data"
    body = await _read_body(request, limit + (FORM_OVERHEAD if is_form else 0), limit, held, timeout)
    if not is_form:
        name = request.headers.get("x-filename") or "upload"
        return Upload(_checked(body, limit), _safe_name(name), content_type)
    if b"boundary" not in options:
        raise UploadError(400, "a multipart/form-data body needs a boundary in its Content-Type")
    parts = _parse_form(body, options[b"boundary"])
    files = [p for p in parts if p.name == FORM_FIELD] or [p for p in parts if p.filename]
    if not files:
        raise UploadError(400, f"the form has no file; send the image in a field named {FORM_FIELD!r} "
                               "(curl -F file=@image.png) or as the raw request body")
    part = files[0]
    return Upload(_checked(part.data, limit), _safe_name(part.filename or "upload"), part.content_type)


async def _read_body(request: Request, cap: int, limit: int, held: Held | None, timeout: float | None) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise UploadError(413, _too_large(int(declared), limit))
    if held is not None and declared and declared.isdigit():
        held.reserve(int(declared))
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            if deadline is None:
                chunk = await stream.__anext__()
            else:
                chunk = await asyncio.wait_for(stream.__anext__(), max(deadline - loop.time(), 0.0))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise UploadError(408, f"the request body did not arrive within {timeout:g} s ({size:,} of "
                                   f"{declared + ' declared' if declared else 'an unknown number of'} bytes "
                                   "received; medpeft serve --body-timeout-s)") from None
        except ClientDisconnect:
            raise UploadError(CLIENT_GONE, f"the client disconnected after sending {size:,} of "
                                           f"{declared or 'an unknown number of'} bytes") from None
        size += len(chunk)
        if size > cap:
            raise UploadError(413, _too_large(size, limit, more=True))
        if held is not None:
            held.reserve(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _checked(data: bytes, limit: int) -> bytes:
    if len(data) > limit:
        raise UploadError(413, _too_large(len(data), limit))
    if not data:
        raise UploadError(400, "the upload is empty; send an image (PNG, JPEG or DICOM)")
    return data


def _too_large(size: int, limit: int, more: bool = False) -> str:
    return (f"the upload is {'more than ' if more else ''}{size:,} bytes, above the server's limit of {limit:,} "
            "bytes (medpeft serve --max-upload-mb)")


def _safe_name(name: str) -> str:
    """The last path component, printable: it only labels messages and selects DICOM by suffix."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200] or "upload"


@dataclass
class _Part:
    name: str = ""
    filename: str = ""
    content_type: str = ""
    data: bytes = b""


def _parse_form(body: bytes, boundary: bytes) -> list[_Part]:
    """The parts of a multipart/form-data body, each in memory."""
    parts: list[_Part] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}
    headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    def on_part_begin():
        headers.clear()
        chunks.clear()

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        headers[header["field"].lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_part_data(data, start, end):
        chunks.append(bytes(data[start:end]))

    def on_part_end():
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        parts.append(_Part(disposition.get(b"name", b"").decode("utf-8", "replace"),
                           disposition.get(b"filename", b"").decode("utf-8", "replace"),
                           headers.get(b"content-type", b"").decode("latin-1"), b"".join(chunks)))

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field, on_header_value=on_header_value,
                     on_header_end=on_header_end, on_part_data=on_part_data, on_part_end=on_part_end)
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as err:  # noqa: BLE001 - python-multipart raises its own error types
        raise UploadError(400, f"the multipart/form-data body cannot be parsed ({err})") from None
    return parts
