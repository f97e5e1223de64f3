"""``medpeft serve``: load the runs, print what is served, run the app under uvicorn.

One process, one worker: the point is one copy of each backbone in memory, and more worker
processes would each hold their own. Concurrency comes from the event loop (uploads, decoding
in threads) and from batching (:mod:`medpeft.serve.batcher`).
"""
from __future__ import annotations

import logging
import os

import torch
from rich.console import Console

from ..table import Table
from .config import ServeConfig
from .pool import AdapterPool, run_names

API_KEY_ENV = "MEDPEFT_API_KEY"


def load_pool(runs: list[str], config: ServeConfig) -> AdapterPool:
    """The runs named ``name=dir`` or by their folder, loaded as ``config`` says (one base per group)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    # config.max_pixels is checked by the app on each upload's header (serve/app.py _prepare), with a
    # message about --max-pixels; the process-wide limit (data.decode) stays a backstop above it
    return AdapterPool.load(run_names(runs), share_base=config.share_base, mix=config.mix_adapters,
                            device=config.device, check_inputs=config.check_inputs)


def models_table(pool: AdapterPool) -> Table:
    table = Table(title="served models", columns=["name", "task", "labels", "method", "backbone", "base",
                                                  "trainable", "batching"])
    for run in pool.runs.values():
        info = run.describe()
        table.add_row(info["name"], info["task"], ", ".join(info["labels"]), info["method"],
                      f"{info['backbone']['name']} {info['backbone']['img_size']}px", info["base"],
                      f"{info['trainable_params']:,}", info["batching"])
    memory = pool.memory()
    table.caption = (f"{memory['bases']} base(s); model tensors {memory['tensor_bytes'] / 2**20:.1f} MiB "
                     f"(as full models: {memory['full_models_tensor_bytes'] / 2**20:.1f} MiB)")
    return table


def serve(runs: list[str], config: ServeConfig, *, api_key: str | None = None, console: Console | None = None) -> None:
    import uvicorn

    from .app import create_app

    console = console or Console()
    pool = load_pool(runs, config)
    models_table(pool).print(console)
    console.print(f"web page and API on http://{config.host}:{config.port}/"
                  + ("  (API key required)" if api_key else ""))
    if config.save_uploads:
        console.print(f"uploads are kept in {config.save_uploads}")
    logging.getLogger("medpeft.serve").setLevel(logging.INFO)
    uvicorn.run(create_app(pool, config, api_key), host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=5)


def api_key_from(file: str | None) -> str | None:
    """The API key: the first line of ``file``, else ``$MEDPEFT_API_KEY``, else None (no key)."""
    if file:
        try:
            key = open(file).readline().strip()
        except OSError as err:
            raise ValueError(f"cannot read the API key file {file}: {err.strerror}") from None
        if not key:
            raise ValueError(f"the API key file {file} is empty")
        return key
    return os.environ.get(API_KEY_ENV, "").strip() or None
