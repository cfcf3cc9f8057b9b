"""API overhead: create/poll latency and throughput of kinema's API vs a bare FastAPI endpoint.

Starts `kinema serve --no-worker` and a bare FastAPI app (one JSON route) with uvicorn on loopback,
drives both with N concurrent httpx clients for the same number of requests, and prints one JSON
line with percentiles and the ratio against the bare endpoint measured in the same run.

    python benchmarks/api_overhead.py --requests 2000 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from _servers import BENCH_KEY as KEY
from _servers import free_port, start_kinema, wait_ready

BARE_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.get("/ping")
def ping() -> dict:
    return {"id": "x" * 32, "status": "queued", "progress": 0}
"""


def start_bare(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "bare_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/ping")
    return process, url


async def drive(
    call: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]], total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    remaining = iter(range(total))

    async def client_loop(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            start = time.perf_counter()
            response = await call(client)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "p50_ms": round(quantiles[49] * 1000, 2),
        "p99_ms": round(quantiles[98] * 1000, 2),
        "rps": round(total / elapsed, 1),
    }


async def measure(
    kinema_url: str, bare_url: str, total: int, concurrency: int
) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {KEY}"}
    body = {"model": "klingai/video-v2-6-pro-text-to-video", "prompt": "benchmark"}
    async with httpx.AsyncClient(base_url=kinema_url, headers=auth) as setup:
        job_id = (await setup.post("/v2/video/generations", json=body)).json()["id"]

    async def create(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{kinema_url}/v2/video/generations", json=body, headers=auth)

    async def poll(client: httpx.AsyncClient) -> httpx.Response:
        params = {"generation_id": job_id}
        return await client.get(f"{kinema_url}/v2/video/generations", params=params, headers=auth)

    async def bare(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get(f"{bare_url}/ping")

    results = {
        "bare": await drive(bare, total, concurrency),
        "poll": await drive(poll, total, concurrency),
        "create": await drive(create, total, concurrency),
    }
    return {
        "benchmark": "api_overhead",
        "requests": total,
        "concurrency": concurrency,
        **results,
        "poll_rps_ratio_vs_bare": round(results["poll"]["rps"] / results["bare"]["rps"], 3),
        "create_rps_ratio_vs_bare": round(results["create"]["rps"] / results["bare"]["rps"], 3),
        "poll_p50_ratio_vs_bare": round(results["poll"]["p50_ms"] / results["bare"]["p50_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kinema, kinema_url = start_kinema(Path(tmp) / "data", "--no-worker")
        bare, bare_url = start_bare(Path(tmp))
        try:
            result = asyncio.run(measure(kinema_url, bare_url, args.requests, args.concurrency))
        finally:
            for process in (kinema, bare):
                process.terminate()
                process.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
