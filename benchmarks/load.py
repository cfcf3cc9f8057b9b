"""The API under load: polls, creates and /healthz of `kinema serve --no-worker` against a bare
FastAPI JSON endpoint, at 200 and 500 concurrent keep-alive connections.

Starts kinema (the embedded SQLite store by default; with `--store postgresql+psycopg://…` a
scratch database on that server, dropped at the end), seeds N completed jobs through the store,
starts the bare endpoint in its own uvicorn process with the same uvicorn settings, then drives
both with the same low-overhead load generator: Debian's `wrk` (C, one thread, a Lua script for
the Authorization header and the random ids) or, where wrk is missing or `--client asyncio` asks
for it, a raw asyncio HTTP/1.1 keep-alive client in its own process. Per connection count:

- polls: `GET /v2/video/generations?generation_id=<random seeded id>` against the bare `GET /ping`
  (requests/s, p50/p99, server CPU per request, connection errors);
- /healthz while the polls saturate the API: one probe every `--probe-interval` s on a new
  connection (as an orchestrator's probe), against the same probe of the bare endpoint while it
  is saturated;
- creates: `POST /v2/video/generations` (requests/s, p50/p99, server CPU, errors), compared
  with the bare endpoint's figures; the jobs they queue are removed before the next level.

Server CPU is each server process's user+system time over the phase, per response (/proc).

Every phase lasts `--seconds` (the asyncio client also stops at `--max-requests`). Prints a table,
or with `--json` one JSON line. Loopback only.

    python benchmarks/load.py
    python benchmarks/load.py --store postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python benchmarks/load.py --client asyncio --connections 200 --seconds 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _servers import BENCH_KEY, HOST, scratch_postgres, start_bare, start_kinema, stop
from kinema.config import Settings
from kinema.domain import GenerationRequest, Job, JobStatus, VideoArtifact
from kinema.service import hash_key
from kinema.store import migrate, open_store_url
from kinema.store.db import create_engine
from kinema.store.schema import jobs as jobs_table

MODEL = "tiny-ltx2"
POLL_PATH = "/v2/video/generations"
CREATE_BODY = json.dumps({"model": "klingai/video-v2-6-pro-text-to-video", "prompt": "benchmark"})
REQUEST_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0
GOALS = {"poll_rps_ratio": 0.5, "create_p99_ms": 250.0, "healthz_p99_ms": 50.0, "errors": 0}


# -- results ---------------------------------------------------------------------------------


@dataclass
class Drive:
    """What one load generator run measured."""

    requests: int  # responses received
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    connection_errors: int  # connect, read, write errors and timeouts
    status_errors: int  # responses with a status of 400 or more
    server_cpu_ms: float | None = None  # the server process's CPU time per response

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "connection_errors": self.connection_errors,
            "status_errors": self.status_errors,
            "server_cpu_ms_per_request": (
                None if self.server_cpu_ms is None else round(self.server_cpu_ms, 3)
            ),
        }


@dataclass
class Probes:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        values = sorted(self.latencies_ms)
        return {
            "samples": len(values),
            "p50_ms": round(percentile(values, 50), 2),
            "p99_ms": round(percentile(values, 99), 2),
            "max_ms": round(values[-1] if values else 0.0, 2),
            "errors": self.errors,
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = max(0, math.ceil(pct / 100 * len(sorted_values)) - 1)
    return sorted_values[index]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One kind of request against one server: a method, paths to pick from at random, a body."""

    url: str
    method: str
    paths: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    def raw_requests(self) -> list[bytes]:
        """The HTTP/1.1 requests, ready to write (one per path)."""
        lines = [f"Host: {HOST}:{self.port}", *(f"{k}: {v}" for k, v in self.headers)]
        if self.method != "GET":
            lines.append(f"Content-Length: {len(self.body.encode())}")
        head = "\r\n".join(lines)
        return [
            f"{self.method} {path} HTTP/1.1\r\n{head}\r\n\r\n{self.body}".encode()
            for path in self.paths
        ]


def targets(kinema_url: str, bare_url: str, job_ids: list[str]) -> dict[str, Target]:
    auth = ("Authorization", f"Bearer {BENCH_KEY}")
    return {
        "bare": Target(bare_url, "GET", ("/ping",)),
        "poll": Target(
            kinema_url,
            "GET",
            tuple(f"{POLL_PATH}?generation_id={job_id}" for job_id in job_ids),
            (auth,),
        ),
        "create": Target(
            kinema_url,
            "POST",
            (POLL_PATH,),
            (auth, ("Content-Type", "application/json")),
            CREATE_BODY,
        ),
    }


# -- wrk -------------------------------------------------------------------------------------

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, "
    .. "\\"max_us\\": %d, \\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, "
    .. "\\"timeout\\": %d, \\"status\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def wrk_script(target: Target) -> str:
    headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers)
    lines = [f"wrk.method = {_lua_string(target.method)}", f"wrk.headers = {{{headers}}}"]
    if target.body:
        lines.append(f"wrk.body = {_lua_string(target.body)}")
    if len(target.paths) > 1:
        paths = ", ".join(_lua_string(p) for p in target.paths)
        lines += [
            f"local paths = {{{paths}}}",
            "math.randomseed(os.time())",
            "request = function()",
            "  return wrk.format(nil, paths[math.random(#paths)])",
            "end",
        ]
    else:
        lines.append(f"wrk.path = {_lua_string(target.paths[0])}")
    return "\n".join(lines) + "\n" + WRK_DONE


def drive_wrk(target: Target, connections: int, seconds: float, workdir: Path) -> Drive:
    script = workdir / f"wrk_{uuid.uuid4().hex}.lua"
    script.write_text(wrk_script(target))
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={REQUEST_TIMEOUT_S:g}s",
        "-s",
        str(script),
        target.url,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    found = re.search(r"^WRK_RESULT (.*)$", run.stdout, re.MULTILINE)
    if run.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stdout}{run.stderr}")
    raw = json.loads(found.group(1))
    return Drive(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        connection_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        status_errors=raw["status"],
    )


# -- the raw asyncio client ------------------------------------------------------------------


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    connection_errors: int = 0
    status_errors: int = 0
    budget: int = 0  # requests left to send, over all connections


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request, read its whole response: (status, whether the server closes)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length:
        await reader.readexactly(length)
    return status, close


async def _connection_loop(
    port: int, requests: list[bytes], deadline: float, tally: _Tally
) -> None:
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while tally.budget > 0 and time.perf_counter() < deadline:
        tally.budget -= 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                if streams is None:
                    streams = await asyncio.open_connection(HOST, port)
                status, close = await _exchange(*streams, random.choice(requests))
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            tally.connection_errors += 1
            close, status = True, 0
        else:
            tally.latencies.append(time.perf_counter() - start)
            tally.status_errors += status >= 400
        if close and streams is not None:
            streams[1].close()
            streams = None
    if streams is not None:
        streams[1].close()


async def _drive_async(
    port: int, requests: list[bytes], connections: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    tally = _Tally(budget=max_requests)
    start = time.perf_counter()
    deadline = start + seconds
    loops = (_connection_loop(port, requests, deadline, tally) for _ in range(connections))
    await asyncio.wait_for(asyncio.gather(*loops), seconds + REQUEST_TIMEOUT_S + 5)
    values = sorted(tally.latencies)
    return {
        "requests": len(values),
        "seconds": time.perf_counter() - start,
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": (values[-1] if values else 0.0) * 1000,
        "connection_errors": tally.connection_errors,
        "status_errors": tally.status_errors,
    }


def _drive_process(args: tuple[int, list[bytes], int, float, int], sender: Connection) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sender.send(asyncio.run(_drive_async(*args)))


def drive_asyncio(target: Target, connections: int, seconds: float, max_requests: int) -> Drive:
    """The same load from a raw asyncio client in a process of its own."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    args = (target.port, target.raw_requests(), connections, seconds, max_requests)
    process = context.Process(target=_drive_process, args=(args, sender), daemon=True)
    process.start()
    try:
        if not receiver.poll(seconds + REQUEST_TIMEOUT_S + 60):
            raise RuntimeError("the asyncio load generator did not report")
        return Drive(**receiver.recv())
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


# -- the /healthz probe ----------------------------------------------------------------------


def probe_once(port: int, path: str) -> float:
    """One GET on a new connection (as an orchestrator's probe); its latency in ms."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    start = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT_S) as sock:
        sock.sendall(request.encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    if not response.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected response {response[:40]!r}")
    return (time.perf_counter() - start) * 1000


@contextmanager
def probing(port: int, path: str, interval: float, seconds: float) -> Iterator[Probes]:
    """Probe `path` every `interval` s in a thread while the block runs (at most `seconds`)."""
    probes = Probes()
    done = threading.Event()
    deadline = time.monotonic() + seconds
    max_samples = int(seconds / interval) + 1

    def run() -> None:
        time.sleep(min(1.0, seconds / 4))  # let the load reach its steady state first
        while not done.is_set() and time.monotonic() < deadline:
            if len(probes.latencies_ms) + probes.errors >= max_samples:
                return
            try:
                probes.latencies_ms.append(probe_once(port, path))
            except OSError:
                probes.errors += 1
            done.wait(interval)

    thread = threading.Thread(target=run, name="probe", daemon=True)
    thread.start()
    try:
        yield probes
    finally:
        done.set()
        thread.join(timeout=PROBE_TIMEOUT_S + 1)


# -- the servers -----------------------------------------------------------------------------


def seed_completed_jobs(store_url: str, count: int) -> list[str]:
    """`count` completed jobs of the benchmark key, made through the store as a worker would."""
    store = open_store_url(store_url)
    try:
        key = store.find_key(hash_key(BENCH_KEY))
        if key is None:
            raise RuntimeError("the benchmark key was not seeded")
        now = time.time()
        ids = [uuid.uuid4().hex for _ in range(count)]
        for index, job_id in enumerate(ids):
            request = GenerationRequest(model=MODEL, prompt=f"seeded {index}", seed=index)
            job = Job(job_id, key.id, request, JobStatus.QUEUED, now, meta={})
            store.add_job(job)
        for _ in ids:
            lease = store.claim([MODEL], "load-benchmark", 60)
            if lease is None:
                raise RuntimeError("a seeded job could not be claimed")
            artifact = VideoArtifact(
                f"{lease.job.id}/video.mp4",
                "video.mp4",
                123_456,
                5.0,
                1920,
                1080,
                24.0,
                True,
                thumbnail_key=f"{lease.job.id}/thumbnail.jpg",
            )
            store.complete(lease, artifact, {"timings": {"generate": 1.0}})
        return ids
    finally:
        store.close()


@contextmanager
def database(store: str | None) -> Iterator[str | None]:
    """None for kinema's embedded SQLite; a scratch PostgreSQL database's URL otherwise."""
    if store is None:
        yield None
        return
    with scratch_postgres(store) as url:
        migrate(url)  # on PostgreSQL upgrading the schema is the operator's job, not serve's
        yield url


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    connections: tuple[int, ...]
    seconds: float
    client: str
    max_requests: int
    probe_interval: float


def drive(target: Target, connections: int, options: Options, workdir: Path) -> Drive:
    if options.client == "wrk":
        return drive_wrk(target, connections, options.seconds, workdir)
    return drive_asyncio(target, connections, options.seconds, options.max_requests)


def measured(target: Target, pid: int, connections: int, options: Options, workdir: Path) -> Drive:
    before = cpu_seconds(pid)
    result = drive(target, connections, options, workdir)
    after = cpu_seconds(pid)
    if before is not None and after is not None and result.requests:
        result.server_cpu_ms = (after - before) * 1000 / result.requests
    return result


def saturated_with_probe(
    target: Target,
    pid: int,
    probe: tuple[int, str],
    connections: int,
    options: Options,
    workdir: Path,
) -> tuple[Drive, Probes]:
    with probing(*probe, options.probe_interval, options.seconds) as probes:
        result = measured(target, pid, connections, options, workdir)
    return result, probes


def remove_queued(store_url: str) -> int:
    """Delete the queued jobs (the creates' own), so that every level starts from the seeded jobs
    (a create counts the queue: its cost grows with the queue's depth); returns how many."""
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            queued = jobs_table.c.status == JobStatus.QUEUED.value
            return int(conn.execute(jobs_table.delete().where(queued)).rowcount)
    finally:
        engine.dispose()


def run_level(
    servers: dict[str, tuple[int, str]],
    requests: dict[str, Target],
    connections: int,
    options: Options,
    workdir: Path,
    store_url: str,
) -> dict[str, Any]:
    kinema_pid, bare_pid = servers["kinema"][0], servers["bare"][0]
    kinema_port, bare_port = requests["poll"].port, requests["bare"].port
    bare, bare_probe = saturated_with_probe(
        requests["bare"], bare_pid, (bare_port, "/ping"), connections, options, workdir
    )
    poll, health = saturated_with_probe(
        requests["poll"], kinema_pid, (kinema_port, "/healthz"), connections, options, workdir
    )
    create = measured(requests["create"], kinema_pid, connections, options, workdir)
    return {
        "connections": connections,
        "bare": bare.as_dict(),
        "poll": poll.as_dict(),
        "create": {**create.as_dict(), "queued_at_the_end": remove_queued(store_url)},
        "healthz_under_poll_load": health.as_dict(),
        "bare_probe_under_bare_load": bare_probe.as_dict(),
        "poll_rps_ratio_vs_bare": round(poll.rps / bare.rps, 3) if bare.rps else None,
        "create_rps_ratio_vs_bare": round(create.rps / bare.rps, 3) if bare.rps else None,
        "poll_cpu_ratio_vs_bare": (
            round(poll.server_cpu_ms / bare.server_cpu_ms, 2)
            if poll.server_cpu_ms and bare.server_cpu_ms
            else None
        ),
    }


def run(args: argparse.Namespace, options: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, database(args.store) as store_url:
        workdir = Path(tmp)
        store_args = ("--store", store_url) if store_url else ()
        kinema, kinema_url = start_kinema(workdir / "data", "--no-worker", *store_args)
        bare = None
        try:
            bare, bare_url = start_bare(workdir)
            seeded_url = store_url or Settings(data_dir=workdir / "data").database_url
            job_ids = seed_completed_jobs(seeded_url, args.jobs)
            requests = targets(kinema_url, bare_url, job_ids)
            servers = {"kinema": (kinema.pid, kinema_url), "bare": (bare.pid, bare_url)}
            levels = [
                run_level(servers, requests, connections, options, workdir, seeded_url)
                for connections in options.connections
            ]
        finally:
            stop(*(p for p in (kinema, bare) if p is not None))
    return {
        "benchmark": "load",
        "client": options.client,
        "client_description": client_description(options.client),
        "store": "postgresql" if args.store else "sqlite",
        "completed_jobs": args.jobs,
        "seconds_per_phase": options.seconds,
        "cpus": os.cpu_count(),
        "goals": GOALS,
        "levels": levels,
    }


def client_description(client: str) -> str:
    if client == "wrk":
        return "wrk (1 thread, Lua script: Authorization header, random ids)"
    return "raw asyncio HTTP/1.1 keep-alive client (own process)"


# -- output ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    lines = [
        f"load generator: {result['client_description']}; store: {result['store']}; "
        f"{result['completed_jobs']} completed jobs; {result['seconds_per_phase']:g} s per phase; "
        f"{result['cpus']} CPUs",
        f"{'conns':>5}  {'measure':<34}{'kinema':>12}{'bare':>12}{'ratio':>8}  goal",
    ]
    for level in result["levels"]:
        lines += _level_rows(level)
    return "\n".join(lines)


def _level_rows(level: dict[str, Any]) -> list[str]:
    poll, bare, create = level["poll"], level["bare"], level["create"]
    health, bare_probe = level["healthz_under_poll_load"], level["bare_probe_under_bare_load"]
    cpu = "server_cpu_ms_per_request"
    rows: list[tuple[str, object, object, object, str]] = [
        (
            "poll vs bare: requests/s",
            poll["rps"],
            bare["rps"],
            level["poll_rps_ratio_vs_bare"],
            f">= {GOALS['poll_rps_ratio']}x",
        ),
        ("poll vs bare: p50 ms", poll["p50_ms"], bare["p50_ms"], "", ""),
        ("poll vs bare: p99 ms", poll["p99_ms"], bare["p99_ms"], "", ""),
        (
            "poll vs bare: server CPU ms/req",
            poll[cpu],
            bare[cpu],
            level["poll_cpu_ratio_vs_bare"],
            "",
        ),
        (
            "create vs bare: requests/s",
            create["rps"],
            bare["rps"],
            level["create_rps_ratio_vs_bare"],
            "",
        ),
        ("create vs bare: server CPU ms/req", create[cpu], bare[cpu], "", ""),
        ("create vs bare: p50 ms", create["p50_ms"], bare["p50_ms"], "", ""),
        (
            "create vs bare: p99 ms",
            create["p99_ms"],
            bare["p99_ms"],
            "",
            f"<= {GOALS['create_p99_ms']:g} (create)",
        ),
        ("create: jobs queued at its end", create["queued_at_the_end"], "", "", ""),
        ("probe while saturated: p50 ms", health["p50_ms"], bare_probe["p50_ms"], "", ""),
        (
            "probe while saturated: p99 ms",
            health["p99_ms"],
            bare_probe["p99_ms"],
            "",
            f"<= {GOALS['healthz_p99_ms']:g} (/healthz)",
        ),
        ("probe while saturated: max ms", health["max_ms"], bare_probe["max_ms"], "", ""),
        (
            "connection errors: poll/create",
            f"{poll['connection_errors']}/{create['connection_errors']}",
            bare["connection_errors"],
            "",
            "0",
        ),
        (
            "status errors >= 400: poll/create",
            f"{poll['status_errors']}/{create['status_errors']}",
            bare["status_errors"],
            "",
            "0",
        ),
    ]
    c = level["connections"]
    return [
        f"{c:>5}  {name:<34}{mine!s:>12}{reference!s:>12}{'' if ratio is None else ratio!s:>8}"
        f"  {goal}"
        for name, mine, reference, ratio, goal in rows
    ]


def parse_args() -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        help="a PostgreSQL server URL (postgresql+psycopg://user@127.0.0.1:5432/postgres) whose "
        "user may create databases; default: kinema's embedded SQLite",
    )
    parser.add_argument("--jobs", type=int, default=20, help="completed jobs to poll")
    parser.add_argument("--connections", default="200,500", help="comma-separated levels")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--client", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument(
        "--max-requests", type=int, default=200_000, help="asyncio client: cap per phase"
    )
    parser.add_argument("--probe-interval", type=float, default=0.05, help="seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.store and urlsplit(args.store).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--store must be a loopback PostgreSQL server")
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    levels = tuple(int(c) for c in args.connections.split(",") if c.strip())
    options = Options(levels, args.seconds, client, args.max_requests, args.probe_interval)
    return args, options


def main() -> None:
    args, options = parse_args()
    result = run(args, options)
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    main()
