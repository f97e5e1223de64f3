"""A bounded load test of ``medpeft serve`` on the loopback address: latency, throughput, memory,
and a kill-and-restart in the middle of the load.

Trains eight small LoRA runs over one base (ViT-Tiny at 28 px, one seed, so one random-init
base; PneumoniaMNIST and BreastMNIST, ranks 4 and 8, two learning rates: eight different
adapters), then for each configuration starts ``medpeft serve`` in its own process, sends a fixed
number of requests (real PneumoniaMNIST test images as PNG uploads, round-robin over the served
adapters) at a fixed concurrency, and stops:

    1 adapter                       one run
    8 adapters, one backbone        the eight runs over one base (per-sample LoRA batches)
    8 full models                   --no-share-base: each run its own full model, for memory

It prints p50/p95/p99 latency, throughput, errors, the server's resident memory (VmRSS after the
load) and its model tensor bytes. Then it kills the 8-adapter server with SIGKILL while requests
are in flight, restarts it on the same port and checks that a fixed probe set gets the same
answers as before the kill. Every request must answer 200 except those cut by the kill.

    .venv/bin/python benchmarks/serve_load.py                        # 2000 requests at concurrency 16
    .venv/bin/python benchmarks/serve_load.py --requests 500 --depth 4
    .venv/bin/python benchmarks/serve_load.py --hostile                # only the memory bound, below

``--hostile`` measures only the memory bound of docs/serving.md ("Bounded memory"): the
8-adapter server (default limits) gets 20 concurrent uploads of a 9000x9000 PNG (grey and RGB)
and 40 stalled bodies that declare 20 MB and send 3 bytes; it prints the server's VmRSS before
and its peak (VmHWM) after, each status seen, then checks that a normal request answers 200.

Results and the machine are in docs/serving.md. The client runs on the same machine (one event
loop, httpx), so it takes CPU from the server; numbers are for comparing configurations.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from rich.console import Console

from medpeft.data import load_dataset
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig
from medpeft.train import finetune

DATA = ("medmnist:pneumoniamnist", "medmnist:breastmnist")


def train_runs(root: Path, depth: int, steps: int) -> dict[str, Path]:
    """Eight LoRA runs of seed 0 over the same ViT config: one frozen base, eight adapters."""
    backbone = BackboneConfig("vit_tiny", img_size=28, patch_size=4, drop_path=0.0, timm_kwargs={"depth": depth})
    runs = {}
    for i, (data, rank, lr) in enumerate((d, r, lr) for d in DATA for r in (4, 8) for lr in (1e-3, 3e-3)):
        name = f"{data.split(':')[1][:6]}-r{rank}-lr{lr:g}"
        out = root / name
        if not (out / "adapter_model.safetensors").exists():
            config = RunConfig(data=DataConfig(spec=data), backbone=backbone, method="lora",
                               method_options={"rank": rank},
                               train=TrainConfig(steps=steps, batch_size=64, lr=lr, n_bootstrap=0, seed=0))
            finetune(config, out, console=Console(quiet=True), progress=False)
        runs[name] = out
    return runs


def png_bodies(n: int) -> list[bytes]:
    bodies = []
    for image in load_dataset(DATA[0]).test.images.array[:n]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        bodies.append(buffer.getvalue())
    return bodies


class Server:
    """``medpeft serve`` in its own process group on 127.0.0.1."""

    def __init__(self, runs: dict[str, Path], port: int, options: list[str], log: Path):
        script = Path(sys.executable).with_name("medpeft")
        command = [str(script), "serve", *[f"{n}={p}" for n, p in runs.items()], "--port", str(port), *options]
        self.url, self.log = f"http://127.0.0.1:{port}", log
        self.process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait_ready(self, timeout: float = 300) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return time.monotonic() - start
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"no answer within {timeout} s:\n{self.log.read_text()}")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


async def load(url: str, names: list[str], bodies: list[bytes], requests: int, depth: int,
               on_done=None) -> dict:
    """``requests`` POSTs (image i to adapter i mod len(names)) by ``depth`` concurrent workers."""
    latencies, statuses, errors = [], [], []
    counter = iter(range(requests))

    async def worker(http: httpx.AsyncClient):
        for i in counter:
            start = time.perf_counter()
            try:
                response = await http.post(f"/v1/models/{names[i % len(names)]}/predict",
                                           content=bodies[i % len(bodies)])
                statuses.append(response.status_code)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)
            except httpx.TransportError as err:
                errors.append(type(err).__name__)
            if on_done is not None:
                on_done(len(statuses) + len(errors))

    limits = httpx.Limits(max_connections=depth, max_keepalive_connections=depth)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(depth)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": requests, "ok": int(sum(s == 200 for s in statuses)),
            "http_errors": int(sum(s != 200 for s in statuses)), "transport_errors": len(errors),
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p95_ms": float(np.percentile(ms, 95)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "throughput_rps": len(ms) / wall, "wall_s": wall}


def answers(url: str, names: list[str], bodies: list[bytes]) -> np.ndarray:
    """One request at a time (batches of one, so the arithmetic is the same each time)."""
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for name in names:
            for body in bodies:
                response = http.post(f"/v1/models/{name}/predict", content=body)
                response.raise_for_status()
                out.append(list(response.json()["probabilities"].values()))
    return np.array(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(name: str, runs: dict[str, Path], options: list[str], bodies, args, log_dir: Path) -> dict:
    server = Server(runs, free_port(), options, log_dir / f"{name}.log")
    try:
        startup = server.wait_ready()
        asyncio.run(load(server.url, list(runs), bodies, min(50, args.requests), args.depth))  # warm-up
        result = asyncio.run(load(server.url, list(runs), bodies, args.requests, args.depth))
        memory = httpx.get(server.url + "/v1/models", timeout=30).json()["memory"]
        result.update(config=name, adapters=len(runs), startup_s=startup, rss_mib=server.rss_bytes() / 2**20,
                      tensor_mib=memory["tensor_bytes"] / 2**20, bases=memory["bases"])
        return result
    finally:
        server.stop()


def kill_and_restart(runs: dict[str, Path], options: list[str], bodies, args, log_dir: Path) -> dict:
    port, names, probe = free_port(), list(runs), bodies[:4]
    server = Server(runs, port, options, log_dir / "kill-before.log")
    server.wait_ready()
    before = answers(server.url, names, probe)
    killed_at = args.requests // 2

    def maybe_kill(done: int):
        if done == killed_at and server.process.poll() is None:
            server.kill()

    cut = asyncio.run(load(server.url, names, bodies, args.requests, args.depth, on_done=maybe_kill))
    assert server.process.poll() is not None, "the server was not killed"
    restarted = Server(runs, port, options, log_dir / "kill-after.log")
    try:
        restart_s = restarted.wait_ready()
        after = answers(restarted.url, names, probe)
        again = asyncio.run(load(restarted.url, names, bodies, args.requests // 4, args.depth))
    finally:
        restarted.stop()
    return {"killed_after": killed_at, "answered_before_kill": cut["ok"],
            "cut_by_kill": cut["transport_errors"] + cut["http_errors"], "restart_s": restart_s,
            "probe_answers": int(before.size), "max_abs_diff": float(np.abs(before - after).max()),
            "after_restart": {k: again[k] for k in ("requests", "ok", "http_errors", "transport_errors")}}


def hostile(runs: dict[str, Path], options: list[str], bodies, log_dir: Path) -> dict:
    """20 concurrent 9000x9000 PNG uploads + 40 stalled 20 MB bodies; the server's memory before and after."""
    from concurrent.futures import ThreadPoolExecutor

    port = free_port()
    server = Server(runs, port, options, log_dir / "hostile.log")
    names = list(runs)
    huge = []
    for mode in ("L", "RGB"):
        buffer = io.BytesIO()
        Image.new(mode, (9000, 9000), 40).save(buffer, format="PNG")
        huge.append(buffer.getvalue())
    try:
        server.wait_ready()
        hwm = lambda: int(next(line.split()[1] for line in Path(f"/proc/{server.process.pid}/status").read_text()
                                .splitlines() if line.startswith("VmHWM:"))) * 1024
        rss_before, hwm_before = server.rss_bytes(), hwm()
        stalled = []
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            sock.sendall(f"POST /v1/models/{names[0]}/predict HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: {20 * 2**20}\r\n\r\nabc".encode())
            stalled.append(sock)
        post = lambda i: httpx.post(f"{server.url}/v1/models/{names[i % len(names)]}/predict",
                                    content=huge[i % 2], timeout=120).status_code
        with ThreadPoolExecutor(20) as pool:
            uploads = list(pool.map(post, range(20)))
        stalled_statuses = []
        for sock in stalled:
            head = sock.recv(65536)
            stalled_statuses.append(int(head.split(b" ", 2)[1]) if head else 0)
            sock.close()
        after = httpx.post(f"{server.url}/v1/models/{names[0]}/predict", content=bodies[0], timeout=60)
        return {"rss_before_mib": rss_before / 2**20, "hwm_before_mib": hwm_before / 2**20,
                "hwm_after_mib": hwm() / 2**20, "uploads": sorted(set(uploads)),
                "stalled": sorted(set(stalled_statuses)), "normal_after": after.status_code}
    finally:
        server.stop()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    load1, load5, _ = os.getloadavg()
    return f"{cpu}, {os.cpu_count()} cores; load average {load1:.2f} (1 min) / {load5:.2f} (5 min) at the start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per configuration")
    parser.add_argument("--depth", type=int, default=16, help="concurrent requests in flight")
    parser.add_argument("--vit-depth", type=int, default=12, help="transformer blocks of the ViT-Tiny")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps per run (only weights matter)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    parser.add_argument("--runs", default=str(Path(tempfile.gettempdir()) / "medpeft-serve-load"),
                        help="where the eight runs are trained (reused when present)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--hostile", action="store_true",
                        help="only the memory bound: 20 concurrent 9000x9000 uploads + 40 stalled bodies")
    args = parser.parse_args()
    root = Path(args.runs)
    root.mkdir(parents=True, exist_ok=True)
    host = machine()
    print(f"machine: {host}\ncommand: {' '.join(sys.argv)}\ndate: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    runs = train_runs(root, args.vit_depth, args.train_steps)
    bodies = png_bodies(64)
    options = ["--threads", str(args.threads)]
    first = dict(list(runs.items())[:1])
    if args.hostile:
        result = hostile(runs, options, bodies, root)
        print(f"\nhostile load (8 adapters, default limits): VmRSS before {result['rss_before_mib']:.0f} MiB "
              f"(VmHWM {result['hwm_before_mib']:.0f}), VmHWM after {result['hwm_after_mib']:.0f} MiB; "
              f"uploads answered {result['uploads']}, stalled bodies {result['stalled']}, "
              f"a normal request after: {result['normal_after']}")
        if args.json:
            Path(args.json).write_text(json.dumps({"hostile": result, "machine": host}, indent=1))
        if result["normal_after"] != 200:
            raise SystemExit("the server did not answer a normal request after the hostile load")
        return
    rows = [measure("1 adapter", first, options, bodies, args, root),
            measure("8 adapters, one backbone", runs, options, bodies, args, root),
            measure("8 full models (--no-share-base)", runs, options + ["--no-share-base"], bodies, args, root)]
    print(f"\n{args.requests} requests at concurrency {args.depth}, ViT-Tiny depth {args.vit_depth} at 28 px, "
          f"server --threads {args.threads}\n")
    print("| served | requests | errors | p50 ms | p95 ms | p99 ms | req/s | RSS MiB | tensors MiB | bases |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['requests']} | {r['http_errors'] + r['transport_errors']} | {r['p50_ms']:.1f} | "
              f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['throughput_rps']:.0f} | {r['rss_mib']:.0f} | "
              f"{r['tensor_mib']:.1f} | {r['bases']} |")
    kill = kill_and_restart(runs, options, bodies, args, root)
    print(f"\nkill -9 after {kill['killed_after']} of {args.requests} requests: {kill['answered_before_kill']} answered, "
          f"{kill['cut_by_kill']} cut; restarted in {kill['restart_s']:.1f} s; {kill['probe_answers']} probe "
          f"probabilities before vs after: max |diff| = {kill['max_abs_diff']:.3g}; after the restart "
          f"{kill['after_restart']['ok']}/{kill['after_restart']['requests']} answered")
    print(f"machine at the end: load average {os.getloadavg()[0]:.2f} (1 min)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "kill": kill, "machine": host}, indent=1))
    failed = [r["config"] for r in rows if r["ok"] != r["requests"]]
    if failed or kill["max_abs_diff"] != 0 or kill["after_restart"]["ok"] != kill["after_restart"]["requests"]:
        raise SystemExit(f"errors: {failed or ''} {'' if kill['max_abs_diff'] == 0 else 'answers changed'}")


if __name__ == "__main__":
    main()
