"""A real ``medpeft serve`` process on the loopback address, for the tests that go over TCP
(uvicorn's HTTP parsing, a browser). Started as the CLI starts it; stopped, never left running."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def medpeft_command() -> list[str]:
    script = Path(sys.executable).with_name("medpeft")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from medpeft.cli import main; "
                                                                          "raise SystemExit(main())"]


class LiveServer:
    def __init__(self, runs: dict[str, Path], *options: str, env: dict | None = None, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [*medpeft_command(), "serve", *[f"{name}={path}" for name, path in runs.items()],
                "--port", str(self.port), *options]
        self.log = log
        self.process = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 180.0) -> "LiveServer":
        """Poll /health until it answers (loading torch and the runs takes seconds), or fail with the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"medpeft serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"medpeft serve did not answer within {timeout:.0f} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
