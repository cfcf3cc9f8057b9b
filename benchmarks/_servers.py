"""Starting a kinema server (and a bare FastAPI reference) on a free loopback port, for the
benchmarks; a scratch PostgreSQL database for those that run against one."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

BENCH_KEY = "kin_benchmark_key_000000000000000000"
HOST = "127.0.0.1"
SCRATCH_PREFIX = "kinema_bench"

# The bare reference: one JSON route, served by uvicorn exactly as `kinema serve` serves kinema
# (uvicorn.Config with host, port, log level and keep-alive, everything else uvicorn's defaults).
BARE_APP = """
import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
def ping() -> dict:
    return {"id": "x" * 32, "status": "queued", "progress": 0}


if __name__ == "__main__":
    port, log_level = int(sys.argv[1]), sys.argv[2]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level=log_level, timeout_keep_alive=75
    )
    uvicorn.Server(config).run()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
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


def start_kinema(
    data_dir: Path, *serve_args: str, log_level: str = "warning"
) -> tuple[subprocess.Popen[bytes], str]:
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
    args = ["serve", "--host", HOST, "--port", str(port), "--log-level", log_level, *serve_args]
    process = subprocess.Popen(
        [sys.executable, "-m", "kinema", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{HOST}:{port}"
    wait_ready(f"{url}/healthz")
    return process, url


def start_bare(workdir: Path, log_level: str = "warning") -> tuple[subprocess.Popen[bytes], str]:
    """The bare FastAPI endpoint `GET /ping` in its own uvicorn process."""
    script = workdir / "bare_app.py"
    script.write_text(BARE_APP)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(script), str(port), log_level],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{HOST}:{port}"
    wait_ready(f"{url}/ping")
    return process, url


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _admin(server_url: str) -> psycopg.Connection:
    conninfo = make_url(server_url).set(drivername="postgresql")
    return psycopg.connect(
        conninfo.render_as_string(hide_password=False), autocommit=True, connect_timeout=5
    )


@contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of `server_url` (whose user may create databases),
    dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{SCRATCH_PREFIX}_{secrets.token_hex(6)}"
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(server_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _admin(server_url) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))
