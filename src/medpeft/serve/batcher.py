"""Gathering concurrent requests into batches for the model (dynamic batching).

Each request puts its prepared image in a queue and awaits its answer. One task takes the first
waiting request, then whatever else is waiting or arrives within ``max_wait_ms``, up to
``max_batch``, and hands the batch to :meth:`AdapterPool.predict` on the one model thread; while
the model runs, new requests queue up and form the next batch, so under load batches fill
without anyone waiting on a timer. Requests for different runs share a batch: the pool splits it
into one pass per base (per-sample adapters) or per run.

All model work (batches and explanations) runs on one thread, in order: torch uses its own
threads inside, and a single caller keeps the models' state (e.g. the routing of a mixed pass)
free of races.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch


class Overloaded(Exception):
    """More requests are waiting than ``max_queue``: answer 503 and let the client retry."""


class Batcher:
    def __init__(self, predict: Callable[[list[tuple[str, torch.Tensor]]], list[np.ndarray]], *,
                 max_batch: int, max_wait_ms: float, max_queue: int, on_batch: Callable[[int, float], None] | None = None):
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000.0
        self.max_queue, self.on_batch = max_queue, on_batch
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medpeft-model")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        return self.queue.qsize() if self.queue is not None else 0

    async def submit(self, name: str, image: torch.Tensor) -> np.ndarray:
        """The probabilities of ``image`` under run ``name``, computed in some batch."""
        if self.waiting >= self.max_queue:
            raise Overloaded(f"{self.waiting} requests are waiting for the model (limit {self.max_queue}); retry shortly")
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((name, image, future))
        return await future

    async def run_alone(self, function, *args):
        """Run ``function(*args)`` on the model thread (explanations), between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [item for item in batch if not item[2].done()]  # clients that gave up
            if batch:
                await self._score(loop, batch)

    async def _score(self, loop, batch) -> None:
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.predict, [(n, x) for n, x, _ in batch])
        except Exception as err:  # noqa: BLE001 - every waiting request gets the error, the loop goes on
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        for (_, _, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - start)
