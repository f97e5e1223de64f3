"""The server's settings (``medpeft serve --help`` lists them): one typed config, as for training.

The API key is not a field: a secret does not belong in a YAML recipe or on a command line that
``ps`` shows, so the CLI reads it from ``$MEDPEFT_API_KEY`` or ``--api-key-file``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..runtime.device import check_device_name


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # address to listen on; 0.0.0.0 listens on every interface (put TLS and a firewall in front)
    port: int = 8000  # TCP port
    max_upload_mb: float = 20.0  # largest upload accepted, in MiB (413 above, read no further)
    max_pixels: int | None = 16_777_216  # largest width x height decoded (413 above, read from the header before decoding; a baseline JPEG above it is decoded at 1/2-1/8 of its size instead); the default, 4096 x 4096, is far above any model's input and bounds a decode's memory to ~0.5 GiB; None: the process-wide limit ($MEDPEFT_MAX_IMAGE_PIXELS, else Pillow's 89,478,485)
    max_decodes: int = 2  # images decoded at once; the others wait their turn (each decode peaks at ~17 (grey) to ~28 (RGB) bytes per pixel)
    max_inflight_mb: float = 256.0  # request bodies held at once, in MiB (a declared Content-Length counts in full); 503 with Retry-After beyond
    body_timeout_s: float = 30.0  # a request body must arrive within this many seconds (408 after: stalled clients let go)
    check_inputs: bool = True  # measure each run's training images at start and warn about uploads far from them (size, intensity)
    max_batch: int = 32  # most images in one forward pass
    max_wait_ms: float = 2.0  # how long a batch waits for more requests to join it, in milliseconds
    max_queue: int = 256  # requests waiting for the model at most (503 above)
    share_base: bool = True  # one copy of the frozen base weights per group of runs that have identical ones; false: a full model per run
    mix_adapters: bool = True  # LoRA and linear-probe runs over one base share forward passes, each image with its own adapter
    save_uploads: str | None = None  # folder to keep every upload in (named by its SHA-256); None: nothing uploaded is written to disk
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    threads: int | None = None  # torch threads for the model (None: torch's default)

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1-65535, got {self.port}")
        if not self.max_upload_mb > 0:
            raise ValueError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive number of pixels (or unset), got {self.max_pixels}")
        for name in ("max_batch", "max_queue", "max_decodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_inflight_mb", "body_timeout_s"):
            if not getattr(self, name) > 0:  # NaN fails too
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_inflight_mb < self.max_upload_mb:
            raise ValueError(f"max_inflight_mb ({self.max_inflight_mb}) must be at least max_upload_mb "
                             f"({self.max_upload_mb}): else the largest upload could never be read")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms cannot be negative, got {self.max_wait_ms}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1 (or unset), got {self.threads}")
        check_device_name(self.device)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_inflight_bytes(self) -> int:
        return int(self.max_inflight_mb * 1024 * 1024)
