"""Scale-out under faults: PostgreSQL, two API replicas, three workers, a killer.

Every few seconds a random worker is SIGKILLed and restarted; halfway one API replica is restarted.
Every job must end `completed` exactly once, with exactly one artifact, none stuck, no orphan file.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kinema import Client
from tests.conftest import ServerProcess, kinema_env, launch_server, start_kinema
from tests.pg import fresh_database

KEYS = [f"kin_chaos_key_{n}_0123456789abcdefghij" for n in range(3)]
JOBS_PER_KEY = 20
DEADLINE_SECONDS = 300
CHAOS_ENV = {
    "KINEMA_MODEL": "tiny-ltx2:quality",
    "KINEMA_STEPS": "12",  # jobs long enough (~1 s) that kills land mid-job
    "KINEMA_LEASE_SECONDS": "2",
    "KINEMA_HEARTBEAT_SECONDS": "0.3",
    "KINEMA_API_KEYS": ",".join(KEYS),
}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("kinema_chaos") as url:
        yield url


class Fleet:
    """Worker processes on one shared store and data directory, killable and restartable."""

    def __init__(self, data_dir: Path, tiny_weights: Path, env: dict[str, str]) -> None:
        self.env = kinema_env(data_dir, tiny_weights, **env)
        self.data_dir = data_dir
        self.workers: list[subprocess.Popen[bytes]] = []
        self.kills = 0
        self.started = 0

    def start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = self.data_dir.parent / f"worker-{self.started}.log"
        return start_kinema(["worker", "--log-level", "warning"], self.env, log)

    def scale_to(self, count: int) -> None:
        self.workers = [self.start() for _ in range(count)]

    def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.workers))
        self.workers[index].send_signal(signal.SIGKILL)
        self.workers[index].wait()
        self.kills += 1
        self.workers[index] = self.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(60)


def submit_all(apis: list[ServerProcess]) -> list[tuple[str, str]]:
    """(job id, key) for every job, sent alternately to the replicas."""
    jobs = []
    for n in range(JOBS_PER_KEY * len(KEYS)):
        key = KEYS[n % len(KEYS)]
        with Client(apis[n % len(apis)].url, key) as client:
            jobs.append((client.create(f"chaos clip {n}", seed=n).id, key))
    return jobs


def statuses(url: str, jobs: list[tuple[str, str]]) -> dict[str, str]:
    result = {}
    for job_id, key in jobs:
        with Client(url, key) as client:
            result[job_id] = client.get(job_id).status
    return result


def stored_artifacts(data_dir: Path) -> dict[str, list[str]]:
    root = data_dir / "artifacts"
    by_job: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and ".staging" not in path.parts:
            by_job.setdefault(path.relative_to(root).parts[0], []).append(path.name)
    return by_job


def test_chaos_every_job_completes_exactly_once(
    tmp_path: Path, tiny_weights: Path, pg_url: str
) -> None:
    data_dir = tmp_path / "shared"
    env = {**CHAOS_ENV, "KINEMA_STORE_URL": pg_url}
    upgrade = [sys.executable, "-m", "kinema", "db", "upgrade", "--store", pg_url]
    subprocess.run(upgrade, check=True, env=kinema_env(data_dir, tiny_weights, **env))
    apis = [launch_server(data_dir, tiny_weights, "--no-worker", **env) for _ in range(2)]
    fleet = Fleet(data_dir, tiny_weights, env)
    rng = random.Random(7)
    try:
        fleet.scale_to(3)
        jobs = submit_all(apis)
        deadline = time.monotonic() + DEADLINE_SECONDS
        restarted_api = False
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(2.0, 4.0))
            fleet.kill_one(rng)
            done = statuses(apis[1].url, jobs)
            finished = sum(status == "completed" for status in done.values())
            if not restarted_api and finished >= len(jobs) // 2:
                apis[0].stop()
                apis[0] = launch_server(data_dir, tiny_weights, "--no-worker", **env)
                restarted_api = True
            if finished == len(jobs):
                break
        fleet.stop()
        final = statuses(apis[0].url, jobs)
        assert [s for s in final.values() if s != "completed"] == [], final
        assert restarted_api and fleet.kills >= 3
        artifacts = stored_artifacts(data_dir)
        assert sorted(artifacts) == sorted(job_id for job_id, _ in jobs)
        # One clip, its thumbnail and spritesheet per job, all from the winning attempt's lease.
        stems = {
            job_id: {name.rsplit(".", 1)[0].removesuffix("-sprites") for name in files}
            for job_id, files in artifacts.items()
        }
        assert all(
            sorted(f.rsplit(".", 1)[1] for f in files) == ["jpg", "jpg", "mp4"]
            for files in artifacts.values()
        ), artifacts
        assert all(len(stem) == 1 for stem in stems.values()), artifacts
        staging = data_dir / "artifacts" / ".staging"
        assert not staging.exists() or list(staging.iterdir()) == []
        attempts = []
        for job_id, key in jobs:
            with Client(apis[0].url, key) as a, Client(apis[1].url, key) as b:
                seen_a, seen_b = a.get(job_id), b.get(job_id)
            assert seen_a.video and seen_b.video
            assert (seen_a.status, seen_a.meta, seen_a.progress) == (
                seen_b.status,
                seen_b.meta,
                seen_b.progress,
            )
            assert seen_a.video.file_size == seen_b.video.file_size
            assert httpx.get(seen_a.video.url).content == httpx.get(seen_b.video.url).content
            attempts.append(seen_a.meta["attempts"])
        print(f"chaos: {len(jobs)} jobs, {fleet.kills} kills, attempts {sorted(attempts)}")
    finally:
        for worker in fleet.workers:
            if worker.poll() is None:
                worker.kill()
        for api in apis:
            api.stop()
