"""Dynamic batching on a clock the test moves: requests queued together form one batch (up to
``max_batch``), a request inside the window joins the open batch, one after it starts its own,
and every request gets its own answer back. No real time decides anything: the event loop's
clock stands still until the test advances it, so the window is exact, not a race."""
from __future__ import annotations

import asyncio
import selectors
import threading

import numpy as np
import torch

from medpeft.serve.batcher import Batcher

IDLE_LIMIT_S = 60.0  # a safety net only: a loop with nothing to do for this long is a stuck test


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only by :meth:`advance`: timers (a batch's window, here)
    fire when the test says the time has come, however slow the machine. The loop still wakes for
    real events (the model thread's answers); if it sits with nothing to do and nothing to wait
    for but the frozen clock, it raises instead of hanging."""

    def __init__(self):
        super().__init__(selectors.DefaultSelector())
        self.now = 0.0
        real_select = self._selector.select

        def select(timeout=None):
            # a timer can never fall due while this waits (the clock is frozen), so only a real
            # event can move things on: wait for one, and give up with a message if none comes
            events = real_select(0 if timeout == 0 else IDLE_LIMIT_S)
            if not events and timeout != 0:
                raise RuntimeError(f"the test is stuck: nothing happened for {IDLE_LIMIT_S:.0f} s "
                                   f"and the clock stands at {self.now} s")
            return events

        self._selector.select = select

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Model:
    """The model's side of the batcher: records each batch and answers each image with its own
    value, so a mixed-up answer shows."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.thread_ids: set[int] = set()

    def predict(self, items):
        self.thread_ids.add(threading.get_ident())
        self.batches.append([name for name, _ in items])
        return [np.array([float(x)]) for _, x in items]

    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


class Client:
    """Requests to one batcher: ``submit(i)`` starts a request for image value ``i`` (run name
    ``r{i}``) and returns its task; ``await arrive(i)`` also waits until the batcher has taken it."""

    def __init__(self, loop: ManualClockLoop, batcher: Batcher):
        self.loop, self.batcher = loop, batcher

    def submit(self, i: int) -> asyncio.Task:
        return self.loop.create_task(self.batcher.submit(f"r{i}", torch.tensor(float(i))))

    async def arrive(self, i: int) -> asyncio.Task:
        task = self.submit(i)
        await asyncio.sleep(0)  # tasks run in the order they were made: the request is queued now
        await until(lambda: self.batcher.waiting == 0, f"the batcher took request {i}")
        return task


def scenario(body, *, max_batch: int, max_wait_ms: float):
    """Run ``body(loop, batcher, model, client)`` on a manual-clock loop with a fresh batcher."""
    loop, model, sizes = ManualClockLoop(), Model(), []
    batcher = Batcher(model.predict, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=100,
                      on_batch=lambda size, seconds: sizes.append(size))

    async def main():
        batcher.start()
        try:
            await body(loop, batcher, model, Client(loop, batcher))
        finally:
            await batcher.stop()

    try:
        loop.run_until_complete(main())
    finally:
        left = asyncio.all_tasks(loop)  # only after a failure: let them end quietly
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.close()
    assert sizes == model.sizes()  # what /metrics counts is what the model was given
    return model


async def until(condition, what: str, steps: int = 10_000):
    """Let the loop run (no clock time passes) until ``condition()``; fail if it never holds."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def answers(tasks) -> list[float]:
    return [float(a[0]) for a in await asyncio.gather(*tasks)]


def test_requests_queued_together_are_one_batch_when_the_window_closes():
    async def body(loop, batcher, model, client):
        tasks = [client.submit(i) for i in range(4)]  # all queued before the batcher takes the first
        await until(lambda: batcher.waiting == 0, "the batcher took the four requests")
        for _ in range(100):
            await asyncio.sleep(0)
        assert model.batches == []  # the window (500 ms) is open and the clock has not moved
        loop.advance(0.5)
        assert await answers(tasks) == [0.0, 1.0, 2.0, 3.0]

    model = scenario(body, max_batch=8, max_wait_ms=500)
    assert model.batches == [["r0", "r1", "r2", "r3"]]
    assert len(model.thread_ids) == 1 and threading.get_ident() not in model.thread_ids  # the model thread


def test_max_batch_splits_a_queue_and_a_full_batch_does_not_wait_for_the_window():
    async def body(loop, batcher, model, client):
        tasks = [client.submit(i) for i in range(5)]
        assert await answers(tasks[:4]) == [0.0, 1.0, 2.0, 3.0]  # no clock time has passed
        await until(lambda: batcher.waiting == 0, "the batcher took the fifth request")
        assert model.sizes() == [2, 2] and not tasks[4].done()  # the fifth waits out its window
        loop.advance(0.5)
        assert await answers(tasks[4:]) == [4.0]

    model = scenario(body, max_batch=2, max_wait_ms=500)
    assert model.batches == [["r0", "r1"], ["r2", "r3"], ["r4"]]


def test_a_request_inside_the_window_joins_the_batch_and_one_after_it_starts_its_own():
    async def body(loop, batcher, model, client):
        first = await client.arrive(0)  # at 0 s: its window closes at 0.5 s
        loop.advance(0.25)
        second = await client.arrive(1)  # inside the window
        loop.advance(0.25)
        assert await answers([first, second]) == [0.0, 1.0]
        loop.advance(0.25)
        third = await client.arrive(2)  # at 0.75 s, after the window: a batch of its own
        loop.advance(0.25)
        for _ in range(100):
            await asyncio.sleep(0)
        assert not third.done() and model.sizes() == [2]  # its own window runs to 1.25 s
        loop.advance(0.25)
        assert await answers([third]) == [2.0]

    model = scenario(body, max_batch=8, max_wait_ms=500)
    assert model.batches == [["r0", "r1"], ["r2"]]


def test_a_zero_window_scores_what_is_queued_and_waits_for_nothing():
    async def body(loop, batcher, model, client):
        tasks = [client.submit(i) for i in range(3)]
        assert await answers(tasks) == [0.0, 1.0, 2.0]  # the clock never moved
        assert await answers([client.submit(3)]) == [3.0]

    model = scenario(body, max_batch=8, max_wait_ms=0)
    assert model.sizes() == [3, 1]
