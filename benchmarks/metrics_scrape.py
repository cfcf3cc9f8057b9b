"""The cost of a /metrics scrape with N completed jobs, against the full scan it replaced.

Fills a scratch SQLite store with N jobs completed through `SqlJobStore.complete` (so the
stage-duration histograms are kept as a worker keeps them), then times `GET /metrics` through the
real app. The reference, timed in the same run, is what a scrape did before the histograms were
kept: reading every completed job's timings. Prints one JSON line.

    python benchmarks/metrics_scrape.py --jobs 20000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.domain import GenerationRequest, Job, JobStatus, VideoArtifact
from kinema.server import create_app
from kinema.store import SqlJobStore
from kinema.store.schema import jobs

MODEL = "tiny-ltx2"
ARTIFACT = VideoArtifact("k/a.mp4", "f.mp4", 1, 5.0, 64, 64, 24.0, True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="completed jobs in the store")
    parser.add_argument("--scrapes", type=int, default=20)
    return parser.parse_args()


def complete_jobs(store: SqlJobStore, count: int) -> None:
    for index in range(count):
        job = Job(
            id=f"job-{index}",
            owner="bench",
            request=GenerationRequest(model=MODEL, prompt="p", seed=index),
            status=JobStatus.QUEUED,
            created_at=time.time(),
        )
        store.add_job(job)
        lease = store.claim([MODEL], "bench-worker", 60)
        assert lease is not None
        timings = {"generate": 0.3 + index % 9, "encode": 0.12, "store": 0.01, "stage1": 0.08}
        store.complete(lease, ARTIFACT, {"timings": timings})


def full_scan(store: SqlJobStore) -> int:
    """The reference: every completed job's timings, as scrapes read them before."""
    query = sa.select(jobs.c.model, jobs.c.meta).where(jobs.c.status == JobStatus.COMPLETED.value)
    with store._engine.connect() as conn:
        return len(conn.execute(query).all())


def median_ms(action: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch), model=MODEL)
        with TestClient(create_app(settings)) as client:
            store = client.app.state.services.store  # type: ignore[attr-defined]
            started = time.perf_counter()
            complete_jobs(store, args.jobs)
            fill_s = time.perf_counter() - started
            scrape = median_ms(lambda: client.get("/metrics").raise_for_status(), args.scrapes)
            scan = median_ms(lambda: full_scan(store), args.scrapes)
    result = {
        "benchmark": "metrics_scrape",
        "completed_jobs": args.jobs,
        "scrape_ms": round(scrape, 2),
        "reference_full_scan_ms": round(scan, 2),
        "ratio_scrape_vs_scan": round(scrape / scan, 4),
        "complete_per_job_ms": round(fill_s / args.jobs * 1000, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
