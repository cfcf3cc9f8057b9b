"""Jobs survive: a SIGKILLed worker's job completes once after restart; restarts lose nothing."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from kinema import Client, ClientError
from kinema.service import KeyService, hash_key
from kinema.store.sql import open_store
from tests.conftest import (
    OTHER_KEY,
    TEST_KEY,
    ServerProcess,
    free_port,
    kinema_env,
    launch_server,
    start_kinema,
)

FAST_LEASES = {"KINEMA_LEASE_SECONDS": "2", "KINEMA_HEARTBEAT_SECONDS": "0.3"}
# Enough denoising steps that a tiny 10 s job runs for seconds: a kill lands mid-job.
SLOW_JOBS = {**FAST_LEASES, "KINEMA_MODEL": "tiny-ltx2:quality", "KINEMA_STEPS": "60"}


@pytest.fixture
def api_only(tmp_path: Path, tiny_weights: Path) -> ServerProcess:
    running = launch_server(tmp_path / "data", tiny_weights, "--no-worker", **SLOW_JOBS)
    yield running  # type: ignore[misc]
    running.stop()


def start_worker(api: ServerProcess, tiny_weights: Path, name: str) -> object:
    env = kinema_env(api.data_dir, tiny_weights, **SLOW_JOBS)
    return start_kinema(
        ["worker", "--log-level", "warning"], env, api.data_dir.parent / f"{name}.log"
    )


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_job_of_a_killed_worker_completes_once_after_restart(
    api_only: ServerProcess, tiny_weights: Path
) -> None:
    client = Client(api_only.url, TEST_KEY)
    job = client.create("a long clip to interrupt", duration=10, seed=5)
    first = start_worker(api_only, tiny_weights, "worker-1")
    wait_for(lambda: client.get(job.id).progress > 0, 120, "the first worker to start denoising")
    first.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    first.wait()  # type: ignore[attr-defined]
    interrupted = client.get(job.id)
    assert interrupted.status == "generating"
    assert interrupted.progress < 100

    second = start_worker(api_only, tiny_weights, "worker-2")
    try:
        done = client.wait(job.id, poll_interval=0.1, timeout=180)
    finally:
        second.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        second.wait(30)  # type: ignore[attr-defined]
    assert done.status == "completed", done
    assert done.meta["attempts"] == 2
    artifacts = sorted(p.name for p in (api_only.data_dir / "artifacts" / job.id).iterdir())
    stem = artifacts[0].rsplit(".", 1)[0].removesuffix("-sprites")
    assert artifacts == [f"{stem}-sprites.jpg", f"{stem}.jpg", f"{stem}.mp4"], (
        "one clip, its thumbnail and spritesheet, one lease"
    )
    assert httpx.get(done.video.url).status_code == 200  # type: ignore[union-attr]


def test_api_restart_loses_nothing(tmp_path: Path, tiny_weights: Path) -> None:
    data_dir = tmp_path / "data"
    api = launch_server(data_dir, tiny_weights, "--no-worker")
    with Client(api.url, TEST_KEY) as client:
        ids = [client.create(f"clip {i}", seed=i).id for i in range(3)]
    api.stop()

    api = launch_server(data_dir, tiny_weights, "--no-worker")
    with Client(api.url, TEST_KEY) as client:
        queued = [client.get(i) for i in ids]
    api.stop()
    assert [(g.status, g.queue_position) for g in queued] == [("queued", n) for n in range(3)]

    api = launch_server(data_dir, tiny_weights, "--workers", "2")
    try:
        with Client(api.url, TEST_KEY) as client:
            done = [client.wait(i, poll_interval=0.1, timeout=180) for i in ids]
    finally:
        api.stop()
    assert [g.status for g in done] == ["completed"] * 3

    api = launch_server(data_dir, tiny_weights, "--no-worker")
    try:
        with Client(api.url, TEST_KEY) as client:
            again = [client.get(i) for i in ids]
        assert [g.status for g in again] == ["completed"] * 3
        assert [g.meta["seed"] for g in again] == [0, 1, 2]
        assert httpx.get(again[0].video.url).status_code == 200  # type: ignore[union-attr]
    finally:
        api.stop()


def test_the_api_process_never_loads_torch(api_only: ServerProcess) -> None:
    with Client(api_only.url, TEST_KEY) as client:
        client.create("anything")
    maps = Path(f"/proc/{api_only.process.pid}/maps").read_text()
    assert "libtorch" not in maps and "torch/lib" not in maps


def test_serve_restarts_a_worker_that_died_and_its_job_completes(
    tmp_path: Path, tiny_weights: Path
) -> None:
    server = launch_server(tmp_path / "data", tiny_weights, **SLOW_JOBS)
    try:
        with Client(server.url, TEST_KEY) as client:
            job = client.create("interrupted by the kernel", duration=10, seed=1)
            wait_for(lambda: client.get(job.id).progress > 0, 120, "denoising to start")
            [worker] = server.workers()
            os.kill(worker, signal.SIGKILL)
            done = client.wait(job.id, poll_interval=0.1, timeout=180)
        assert done.status == "completed" and done.meta["attempts"] == 2
        assert server.workers() and server.workers() != [worker]
    finally:
        server.stop()


def test_serve_without_weights_exits_naming_the_setting(tmp_path: Path, tiny_weights: Path) -> None:
    env = kinema_env(tmp_path / "data", tiny_weights, KINEMA_MODEL="ltx-2")
    env["KINEMA_LTX2_WEIGHTS"] = str(tmp_path / "missing-weights")
    log = tmp_path / "serve.log"
    process = start_kinema(["serve", "--port", str(free_port())], env, log)
    assert process.wait(120) == 3
    assert "KINEMA_LTX2_WEIGHTS" in log.read_text()


def test_first_start_without_keys_creates_and_prints_one(
    tmp_path: Path, tiny_weights: Path
) -> None:
    data_dir = tmp_path / "data"
    server = launch_server(data_dir, tiny_weights, "--no-worker", KINEMA_API_KEYS="")
    server.stop()
    printed = re.findall(r"kin_[A-Za-z0-9_-]{20,}", server.output())
    assert len(printed) == 1
    again = launch_server(data_dir, tiny_weights, "--no-worker", KINEMA_API_KEYS="")
    try:
        assert re.findall(r"kin_[A-Za-z0-9_-]{20,}", again.output()) == []  # shown only once
        with Client(again.url, printed[0]) as client:
            assert client.create("hello").status == "queued"
    finally:
        again.stop()


def test_a_revoked_seeded_key_stays_revoked_across_restarts(
    tmp_path: Path, tiny_weights: Path
) -> None:
    data_dir = tmp_path / "data"
    launch_server(data_dir, tiny_weights, "--no-worker").stop()
    store = open_store(data_dir / "kinema.db")
    assert KeyService(store).revoke(f"seeded-{hash_key(TEST_KEY)[:8]}") == 1
    store.close()
    server = launch_server(data_dir, tiny_weights, "--no-worker")
    try:
        with pytest.raises(ClientError) as raised, Client(server.url, TEST_KEY) as client:
            client.create("p")
        assert raised.value.status_code == 401
        with Client(server.url, OTHER_KEY) as client:
            assert client.create("p").status == "queued"
    finally:
        server.stop()
