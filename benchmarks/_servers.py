"""Starting a kinema server on a free loopback port, for the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BENCH_KEY = "kin_benchmark_key_000000000000000000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start_kinema(data_dir: Path, *serve_args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "KINEMA_DATA_DIR": str(data_dir),
        "KINEMA_MODEL": "tiny-ltx2",
        "KINEMA_API_KEYS": BENCH_KEY,
        # a benchmark measures the API, not its back-pressure
        "KINEMA_MAX_QUEUED_PER_KEY": "1000000",
        "KINEMA_MAX_QUEUED_TOTAL": "1000000",
    }
    args = ["serve", "--port", str(port), "--log-level", "warning", *serve_args]
    process = subprocess.Popen(
        [sys.executable, "-m", "kinema", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/healthz")
    return process, url
