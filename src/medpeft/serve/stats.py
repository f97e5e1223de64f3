"""What the server counts, served at ``GET /metrics`` in Prometheus' text format (written by hand:
a few counters and histograms do not need a client library).

Requests by model and HTTP status, request latency and batch-size histograms, batches per
second of model time, the queue, tensor and resident memory, uptime. Requests for names that
are not served are counted under ``model=""``, so a scan of random names cannot grow the table.
"""
from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter, defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts, self.sum, self.count = bounds, [0] * (len(bounds) + 1), 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out, total = [], 0
        for bound, count in zip([*map(_number, self.bounds), "+Inf"], self.counts):
            total += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {total}')
        wrap = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{wrap} {self.sum:.6f}", f"{name}_count{wrap} {self.count}"]


def _number(value: float) -> str:
    return f"{value:g}"


class Stats:
    def __init__(self):
        self.started = time.time()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, Histogram] = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.model_seconds = 0.0

    def request(self, model: str, status: int, seconds: float) -> None:
        self.requests[(model, status)] += 1
        if status == 200:
            self.latency[model].observe(seconds)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_sizes.observe(size)
        self.model_seconds += seconds

    def render(self, memory: dict, waiting: int, models: int) -> str:
        lines = ["# HELP medpeft_requests_total Prediction requests by model and HTTP status.",
                 "# TYPE medpeft_requests_total counter"]
        lines += [f'medpeft_requests_total{{model="{m}",status="{s}"}} {n}'
                  for (m, s), n in sorted(self.requests.items())]
        lines += ["# HELP medpeft_request_seconds Latency of answered (200) prediction requests.",
                  "# TYPE medpeft_request_seconds histogram"]
        for model, histogram in sorted(self.latency.items()):
            lines += histogram.lines("medpeft_request_seconds", f'model="{model}"')
        lines += ["# HELP medpeft_batch_size Images per model call.", "# TYPE medpeft_batch_size histogram",
                  *self.batch_sizes.lines("medpeft_batch_size"),
                  "# HELP medpeft_model_seconds_total Time spent in model calls.",
                  "# TYPE medpeft_model_seconds_total counter", f"medpeft_model_seconds_total {self.model_seconds:.6f}"]
        gauges = {"queue_waiting": (waiting, "Requests waiting for the model."),
                  "models": (models, "Runs served."),
                  "bases": (memory["bases"], "Distinct frozen bases held."),
                  "tensor_bytes": (memory["tensor_bytes"], "Bytes of model tensors held (shared ones once)."),
                  "full_models_tensor_bytes": (memory["full_models_tensor_bytes"],
                                               "Bytes the same runs would hold as full models."),
                  "resident_bytes": (memory["rss_bytes"], "Resident memory of the process."),
                  "uptime_seconds": (round(time.time() - self.started, 3), "Seconds since the server started.")}
        for name, (value, text) in gauges.items():
            lines += [f"# HELP medpeft_{name} {text}", f"# TYPE medpeft_{name} gauge", f"medpeft_{name} {value}"]
        return "\n".join(lines) + "\n"
