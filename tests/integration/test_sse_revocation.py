"""Revoking a key ends the event streams already open with it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from kinema import Client
from kinema.service import hash_key
from tests.conftest import OTHER_KEY, TEST_KEY, ServerProcess, kinema_env, launch_server

pytestmark = pytest.mark.slow


@pytest.fixture
def api_only(tmp_path: Path, tiny_weights: Path) -> Iterator[ServerProcess]:
    server = launch_server(tmp_path / "data", tiny_weights, "--no-worker")
    yield server
    server.stop()


def key_id_of(raw_key: str, server: ServerProcess, tiny_weights: Path) -> str:
    env = kinema_env(server.data_dir, tiny_weights)
    listed = subprocess.run(
        [sys.executable, "-m", "kinema", "keys", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    name = f"seeded-{hash_key(raw_key)[:8]}"
    return next(key["id"] for key in json.loads(listed.stdout) if key["name"] == name)


def revoke(key_id: str, server: ServerProcess, tiny_weights: Path) -> None:
    env = kinema_env(server.data_dir, tiny_weights)
    command = [sys.executable, "-m", "kinema", "keys", "revoke", key_id]
    subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)


def events_of(lines: list[str]) -> list[tuple[str, str]]:
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return list(zip(names, data, strict=True))


def read_to_first_event(lines: Iterator[str], into: list[str]) -> None:
    for line in lines:
        into.append(line)
        if line.startswith("data: "):
            return


def follow(url: str, job_id: str, key: str) -> AbstractContextManager[httpx.Response]:
    """The job's event stream, read with a bound on each wait for the next line."""
    return httpx.stream(
        "GET",
        url,
        params={"generation_id": job_id},
        headers={"Authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(5.0, read=30.0),
    )


def test_a_revoked_keys_open_stream_ends_with_a_401_event(
    api_only: ServerProcess, tiny_weights: Path
) -> None:
    with Client(api_only.url, TEST_KEY) as client, Client(api_only.url, OTHER_KEY) as other:
        queued = client.create("waits forever: no worker", model="tiny-ltx2").id
        other_queued = other.create("the other key's stream goes on", model="tiny-ltx2").id
    url = f"{api_only.url}/v2/video/generations/events"
    lines: list[str] = []
    other_lines: list[str] = []
    with (
        follow(url, queued, TEST_KEY) as stream,
        follow(url, other_queued, OTHER_KEY) as other_stream,
    ):
        assert stream.status_code == 200 and other_stream.status_code == 200
        read_to_first_event(stream_lines := stream.iter_lines(), lines)
        revoke(key_id_of(TEST_KEY, api_only, tiny_weights), api_only, tiny_weights)
        lines.extend(stream_lines)  # to the end: the server closes the stream
        # The other key's stream is still open and following: deleting its job ends it.
        read_to_first_event(other_stream_lines := other_stream.iter_lines(), other_lines)
        with Client(api_only.url, OTHER_KEY) as other:
            other.delete(other_queued)
        other_lines.extend(other_stream_lines)
    events = events_of(lines)
    assert [name for name, _ in events] == ["progress", "unauthorized"]
    error = json.loads(events[-1][1])
    assert error["statusCode"] == 401 and "API key" in error["message"]
    assert [name for name, _ in events_of(other_lines)] == ["progress", "not_found"]
    response = httpx.get(
        url, params={"generation_id": queued}, headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    assert response.status_code == 401
