"""`kinema jobs …` answers the same inputs alike on a server (--server) and on its database (no
--server): one service behind both, so the same results and the same errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from kinema.cli import app
from tests.conftest import TEST_KEY, ServerProcess, launch_server

runner = CliRunner()


@dataclass
class Both:
    server: ServerProcess
    owner: str  # TEST_KEY's id in the database

    def remote(self, *args: str) -> tuple[int, str]:
        return _run([*args, "--server", self.server.url, "--api-key", TEST_KEY])

    def local(self, *args: str) -> tuple[int, str]:
        where = ["--data-dir", str(self.server.data_dir)]
        if args[:2] == ("jobs", "list"):
            where += ["--owner", self.owner]  # the database holds every key's jobs
        return _run([*args, *where])


def _run(args: list[str]) -> tuple[int, str]:
    """The exit code, and stdout on success or stderr on failure."""
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Iterator[Both]:
    server = launch_server(tmp_path_factory.mktemp("parity") / "data", tiny_weights, "--no-worker")
    try:
        headers = {"Authorization": f"Bearer {TEST_KEY}"}
        for prompt in ("a lighthouse at dusk", "rain on a tin roof", "a kite over dunes"):
            body = {"model": "tiny-ltx2", "prompt": prompt}
            created = httpx.post(f"{server.url}/v1/videos", json=body, headers=headers)
            assert created.status_code == 200, created.text
        keys = runner.invoke(app, ["keys", "list", "--json", "--data-dir", str(server.data_dir)])
        owner = json.loads(keys.stdout)[0]["id"]
        yield Both(server, owner)
    finally:
        server.stop()


def _comparable(listing: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [(job["id"], job["status"], job["prompt"]) for job in listing["data"]]


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_listing_is_the_same(both: Both, order: str) -> None:
    remote_code, remote = both.remote("jobs", "list", "--json", "--limit", "2", "--order", order)
    local_code, local = both.local("jobs", "list", "--json", "--limit", "2", "--order", order)
    assert remote_code == local_code == 0
    remote_page, local_page = json.loads(remote), json.loads(local)
    assert _comparable(remote_page) == _comparable(local_page)
    assert remote_page["has_more"] is local_page["has_more"] is True
    after = remote_page["data"][-1]["id"]
    pages = [
        json.loads(run("jobs", "list", "--json", "--after", after, "--order", order)[1])
        for run in (both.remote, both.local)
    ]
    assert _comparable(pages[0]) == _comparable(pages[1]) and len(pages[0]["data"]) == 1


def test_show_is_the_same(both: Both) -> None:
    newest = json.loads(both.local("jobs", "list", "--json", "--limit", "1")[1])["data"][0]["id"]
    remote_code, remote = both.remote("jobs", "show", newest, "--json")
    local_code, local = both.local("jobs", "show", newest, "--json")
    assert remote_code == local_code == 0
    fields = [
        (s["id"], s["status"], s["prompt"], s["model"]) for s in map(json.loads, (remote, local))
    ]
    assert fields == [(newest, "queued", "a kite over dunes", "tiny-ltx2")] * 2


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "show", "no-such-job"),
        ("jobs", "cancel", "no-such-job"),
        ("jobs", "delete", "no-such-job"),
        ("jobs", "list", "--after", "no-such-job"),
    ],
    ids=["show", "cancel", "delete", "list-after"],
)
def test_errors_are_the_same(both: Both, args: tuple[str, ...]) -> None:
    remote_code, remote = both.remote(*args)
    local_code, local = both.local(*args)
    assert remote_code == local_code == 1
    message = local.removeprefix("error: ")
    assert "no-such-job" in message
    # The same words; a server's refusal also names its HTTP status.
    assert remote in (local, f"error: HTTP 404: {message}"), f"server: {remote!r}, local: {local!r}"
