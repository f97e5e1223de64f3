"""A rich progress bar for one epoch, showing running loss and throughput (img/s)."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class EpochProgress:
    """``with EpochProgress(steps, "epoch 1/10", console) as bar: bar.advance(loss=..., images=n)``.

    Transient: the bar disappears when the epoch ends and the caller prints one summary line,
    so logs captured from a non-terminal stay one line per epoch.
    """

    def __init__(self, total: int, description: str, console: Console, enabled: bool = True):
        self.enabled = enabled and console.is_terminal
        self.total, self.description = total, description
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                  console=console, transient=True, disable=not self.enabled)
        self._images, self._start = 0, 0.0

    def __enter__(self) -> "EpochProgress":
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total, stats="")
        self._start = time.perf_counter()
        return self

    def advance(self, *, loss: float, images: int) -> None:
        self._images += images
        rate = self._images / max(time.perf_counter() - self._start, 1e-9)
        self._progress.update(self._task, advance=1, stats=f"loss {loss:.4f}  {rate:.0f} img/s")

    def __exit__(self, *exc) -> None:
        self._progress.stop()
