"""Shared fixtures: settings over a temporary data directory, the tiny model, a real server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kinema.config import Settings
from kinema.private_files import make_private_dirs
from kinema.store_protocol import JobStore

# The tiny model gains nothing from threads, and two threads spinning on a busy two-core machine
# slow it 10-30x. Set before any test module imports torch (it reads this once).
os.environ.setdefault("OMP_NUM_THREADS", "1")

TEST_KEY = "kin_test_key_for_the_suite_0123456789"
OTHER_KEY = "kin_other_key_for_the_suite_987654321"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, built once per test session (nothing is downloaded). The workers of a
    parallel run (pytest -n) share one build: ensure_tiny_ltx2 lets one build while others wait."""
    from kinema.engine.tiny import ensure_tiny_ltx2

    if os.environ.get("PYTEST_XDIST_WORKER"):
        return ensure_tiny_ltx2(tmp_path_factory.getbasetemp().parent / "models")
    return ensure_tiny_ltx2(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty jobs database at the current schema, made once: each test's data dir starts
    with a copy, as if the app had just created it, without running every migration again
    (that is most of the cost of building an app; the migrations have tests of their own)."""
    from kinema.store.sql import open_store_url

    template = Settings(data_dir=make_private_dirs(tmp_path_factory.mktemp("template") / "data"))
    open_store_url(template.database_url).close()
    return template.database_path


@pytest.fixture
def settings(tmp_path: Path, migrated_database: Path) -> Settings:
    # Input images up to 100 kB: a create body may then hold about 330 kB.
    made = Settings(data_dir=tmp_path / "data", model="tiny-ltx2", input_max_bytes=100_000)
    shutil.copy2(migrated_database, make_private_dirs(made.data_dir) / made.database_path.name)
    return made


class Clock:
    """An injected clock for time-dependent code: it moves only when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A `kinema serve` (or `kinema worker`) subprocess on a free loopback port."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> list[int]:
        return children_of(self.process.pid)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until `/readyz` is 200: every served model has a live worker (its model loaded)."""
        deadline = time.monotonic() + timeout
        while httpx.get(f"{self.url}/readyz", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout} s:\n{self.output()}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server; its worker processes must not outlive it."""
        workers = self.workers()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        deadline = time.monotonic() + 10
        while any(map(process_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(process_alive, workers)), f"orphaned workers: {workers}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def kinema_env(data_dir: Path, tiny_weights: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KINEMA_DATA_DIR": str(data_dir),
        "KINEMA_MODEL": "tiny-ltx2",
        "KINEMA_TINY_WEIGHTS": str(tiny_weights),
        "KINEMA_API_KEYS": f"{TEST_KEY},{OTHER_KEY}",
        "HF_HUB_OFFLINE": "1",
        # The tiny model gains nothing from threads, and two-thread spinning on a busy
        # two-core machine slows it 10x.
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def start_kinema(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "kinema", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def children_of(pid: int) -> list[int]:
    """Child processes of every thread of `pid` (the supervisor spawns from its own threads)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return sorted(children)


def process_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout} s:\n{log.read_text()}")


def launch_server(
    data_dir: Path, tiny_weights: Path, *extra_args: str, **env: str
) -> ServerProcess:
    port = free_port()
    log = data_dir.parent / f"serve-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["serve", "--port", str(port), "--log-level", "warning", *extra_args]
    process = start_kinema(args, kinema_env(data_dir, tiny_weights, **env), log)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, log)
    return ServerProcess(url, data_dir, process, log)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Iterator[ServerProcess]:
    """One real `kinema serve` with one worker, shared by a test module."""
    running = launch_server(tmp_path_factory.mktemp("server") / "data", tiny_weights)
    yield running
    running.stop()


def count_jobs(store: JobStore) -> int:
    """Every job the store holds, in every state, deleted ones too until they are purged: the
    sum of the per-status counts its stats report."""
    return sum(store.stats().by_status.values())


def tiny_lora(seed: int) -> dict[str, Any]:
    """A LoRA for every linear layer of the tiny LTX-2 transformer's blocks, in the format of
    Lightricks' trainer (as the tiny distilled LoRA), with its own random weights."""
    import torch

    from kinema.engine import tiny

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return tiny._distilled_lora()


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KINEMA_LORA_DIR: two tiny LTX-2 LoRAs (glow, grain), one file under the tiny Wan's
    folder, and a file that is no LoRA."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("loras")
    (root / "tiny-ltx2").mkdir()
    for seed, name in enumerate(("glow", "grain"), start=100):
        save_file(tiny_lora(seed), str(root / "tiny-ltx2" / f"{name}.safetensors"))
    (root / "tiny-wan-2.2").mkdir()
    (root / "tiny-wan-2.2" / "wan-style.safetensors").write_bytes(b"not read here")
    (root / "tiny-ltx2" / "notes.txt").write_text("not a LoRA")
    return root
