"""`ServiceProcess`: `shoplm serve` as a real process on loopback, for tests that kill it,
restart it, load it or read its logs. Its output goes to a log file the test can read."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m shoplm.cli ARGS`, checked."""
    return subprocess.run([sys.executable, "-m", "shoplm.cli", *args], check=True, capture_output=True,
                          env={**os.environ, **(env or {})})


class ServiceProcess:
    def __init__(self, store_url: str, work: Path, env: dict[str, str] | None = None, port: int | None = None,
                 start_timeout: float = 180):
        self.store_url, self.work, self.start_timeout = store_url, Path(work), start_timeout
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.work / "service.log"
        self.env = {**os.environ, "SHOPLM_EMBEDDING_CACHE_DIR": str(self.work / "cache"),
                    "SHOPLM_SEARCH_INDEX_DIR": str(self.work / "index"), "SHOPLM_MODELS_DIR": str(self.work / "models"),
                    **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> "ServiceProcess":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "shoplm.cli", "serve", "--store", self.store_url, "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"shoplm serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"shoplm serve was not ready after {timeout} s:\n{self.log.read_text()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                return json.load(response)["status"] == "ready"
        except (OSError, ValueError, KeyError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def __enter__(self) -> "ServiceProcess":
        return self.start(self.start_timeout)

    def __exit__(self, *exc) -> None:
        self.stop()
