"""Claim latency on PostgreSQL with a deep queue: N queued jobs from K owners.

Creates a scratch database on the server (dropped at the end), migrates it, queues N jobs
round-robin over K owners, keeps R jobs running (as R busy workers would), then times C claims
through `SqlJobStore.claim` — each claim is one fair pick under `FOR UPDATE SKIP LOCKED`. After
every claim (untimed) a job is queued again and the oldest running one completed, so the queue
stays at N and R jobs stay running. The reference is a plain `SELECT 1` round trip through the
same engine, timed in the same run. Prints one JSON line.

    python benchmarks/claim_latency.py --jobs 10000 --owners 10
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import time
import uuid
from collections import deque

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from kinema.domain import GenerationRequest, Job, JobStatus, Lease, VideoArtifact
from kinema.store import SqlJobStore, migrate, open_store_url
from kinema.store.schema import jobs

MODEL = "tiny-ltx2"
ARTIFACT = VideoArtifact("k", "f.mp4", 1, 5.0, 64, 64, 24.0, True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "KINEMA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL URL whose user may create databases",
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="queued jobs (N)")
    parser.add_argument("--owners", type=int, default=10, help="API keys owning them (K)")
    parser.add_argument("--running", type=int, default=16, help="jobs kept running (R)")
    parser.add_argument("--claims", type=int, default=500, help="timed claims (C)")
    return parser.parse_args()


def admin(server: URL) -> psycopg.Connection:
    conninfo = server.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)


def row(i: int, owners: int, now: float) -> dict[str, object]:
    request = GenerationRequest(model=MODEL, prompt="p", seed=i)
    return {
        "id": uuid.uuid4().hex,
        "owner": f"owner{i % owners}",
        "model": MODEL,
        "request": request.to_dict(),
        "status": JobStatus.QUEUED.value,
        "seed": i,
        "progress": 0.0,
        "created_at": now,
        "attempts": 0,
        "max_attempts": 3,
        "cancel_requested": False,
        "meta": {},
    }


def fill(store: SqlJobStore, count: int, owners: int) -> None:
    now = time.time()
    with store._engine.begin() as conn:
        conn.execute(jobs.insert(), [row(i, owners, now) for i in range(count)])
        conn.exec_driver_sql("ANALYZE jobs")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered) * 1000, 3), "p99": round(p99 * 1000, 3)}


def time_select_one(store: SqlJobStore, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        with store._engine.connect() as conn:
            conn.execute(sa.select(1)).scalar_one()
        samples.append(time.perf_counter() - start)
    return samples


def time_claims(store: SqlJobStore, args: argparse.Namespace) -> list[float]:
    running: deque[Lease] = deque()
    samples = []
    for i in range(args.claims + args.running):
        start = time.perf_counter()
        lease = store.claim([MODEL], f"w{i % max(args.running, 1)}", 600)
        elapsed = time.perf_counter() - start
        assert lease is not None
        running.append(lease)
        if i >= args.running:  # the first R claims only fill the running set
            samples.append(elapsed)
        store.add_job(
            Job(
                id=uuid.uuid4().hex,
                owner=f"owner{i % args.owners}",
                request=GenerationRequest(model=MODEL, prompt="p"),
                status=JobStatus.QUEUED,
                created_at=time.time(),
            )
        )
        while len(running) > args.running:
            store.complete(running.popleft(), ARTIFACT, {})
    return samples


def main() -> None:
    args = parse_args()
    server = make_url(args.server).set(drivername="postgresql+psycopg")
    name = f"kinema_bench_{secrets.token_hex(6)}"
    with admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.set(database=name)
    try:
        migrate(url)
        store = open_store_url(url)
        try:
            fill(store, args.jobs, args.owners)
            time_select_one(store, 50)  # warm the pool
            select_one = time_select_one(store, max(args.claims, 200))
            claims = time_claims(store, args)
            queued_after = store.count_queued()
            select_one += time_select_one(store, max(args.claims, 200))
        finally:
            store.close()
    finally:
        with admin(server) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    claim_ms, select_ms = percentiles(claims), percentiles(select_one)
    print(
        json.dumps(
            {
                "benchmark": "claim_latency",
                "backend": "postgresql",
                "queued": args.jobs,
                "queued_after": queued_after,
                "owners": args.owners,
                "running": args.running,
                "claims": len(claims),
                "claim_ms": claim_ms,
                "select1_ms": select_ms,
                "ratio_p50": round(claim_ms["p50"] / select_ms["p50"], 1),
                "ratio_p99": round(claim_ms["p99"] / select_ms["p99"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
