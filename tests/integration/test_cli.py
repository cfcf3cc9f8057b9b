"""The `kinema` command line: keys, models, generate and jobs (embedded and against a server),
and the client's /v1/videos methods it lists with."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import pytest
from typer.testing import CliRunner

from kinema import AsyncClient, Client, ClientError
from kinema.cli import app
from kinema.client import DEFAULT_MODEL
from kinema.config import Settings
from kinema.worker.in_process import InProcessWorker
from tests.conftest import (
    OTHER_KEY,
    TEST_KEY,
    ServerProcess,
    kinema_env,
    launch_server,
    start_kinema,
)

runner = CliRunner()


def kinema(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kinema", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = runner.invoke(app, ["keys", "create", "--name", "alice", *data])
    assert created.exit_code == 0, created.output
    raw_key = created.stdout.strip()
    assert raw_key.startswith("kin_") and "whsec_" in created.stderr
    listed = runner.invoke(app, ["keys", "list", *data])
    assert "alice" in listed.stdout and raw_key not in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", "alice", *data]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", "alice", *data])
    assert again.exit_code == 1 and "no active key" in again.output


def test_models_lists_the_served_model_and_its_aliases() -> None:
    result = runner.invoke(app, ["models", "--model", "tiny-ltx2", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["id"]: entry for entry in json.loads(result.stdout)}
    assert "description" in entries["tiny-ltx2"]
    assert entries["klingai/video-v2-6-pro-text-to-video"]["alias_of"] == "tiny-ltx2"


def test_models_from_a_server(server: ServerProcess) -> None:
    result = runner.invoke(app, ["models", "--server", server.url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["id"] == "tiny-ltx2"


def test_generate_embedded_writes_an_mp4_with_sound(tmp_path: Path, tiny_weights: Path) -> None:
    out = tmp_path / "fox.mp4"
    env = kinema_env(tmp_path / "data", tiny_weights)
    result = kinema(
        "generate", "a fox in the snow", "--model", "tiny-ltx2", "-o", str(out), env=env
    )
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert abs(float(container.duration / 1e6) - 5) < 0.1


def test_generate_against_a_server(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "remote.mp4"
    env = kinema_env(tmp_path / "unused", Path("/nonexistent"))
    args = ["--server", server.url, "--api-key", TEST_KEY, "--aspect-ratio", "9:16", "-o", str(out)]
    result = kinema("generate", "rain on a window", *args, "--no-audio", env=env)
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video"]
        assert container.streams.video[0].codec_context.height == 96


def remote(server: ServerProcess, *args: str, key: str = TEST_KEY) -> Any:
    """A `kinema` command against the server, in-process; its --json output, parsed."""
    result = runner.invoke(app, [*args, "--server", server.url, "--api-key", key, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_generate_json_then_jobs_list_and_show(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "fox.mp4"
    env = kinema_env(tmp_path / "unused", Path("/nonexistent"))
    args = ["--server", server.url, "--api-key", TEST_KEY, "--seed", "11", "-o", str(out)]
    result = kinema("generate", "a fox in the snow", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout is the one JSON object, nothing else
    assert summary == {
        **summary,
        "status": "completed",
        "path": str(out.resolve()),
        "file_size": out.stat().st_size,
        "seed": 11,
        "model": "tiny-ltx2",
    }
    assert abs(summary["duration"] - 5) < 0.1 and 0 < summary["seconds_taken"] < 300
    assert "downloading" in result.stderr and " kB" in result.stderr  # the transfer's progress

    listed = remote(server, "jobs", "list", "--limit", "1")
    assert [job["id"] for job in listed["data"]] == [summary["id"]]
    shown = remote(server, "jobs", "show", summary["id"])
    assert shown["status"] == "completed" and shown["prompt"] == "a fox in the snow"
    assert shown["params"]["seed"] == 11 and shown["params"]["duration"] == 5
    assert shown["video"]["file_size"] == out.stat().st_size
    assert shown["video"]["url"].startswith(f"{server.url}/files/") and shown["timings"]
    table = runner.invoke(app, ["jobs", "list", "--server", server.url, "--api-key", TEST_KEY])
    assert table.exit_code == 0 and summary["id"] in table.stdout and "a fox in the" in table.stdout


def test_jobs_cancel_and_delete_against_a_server(server: ServerProcess) -> None:
    with Client(server.url, OTHER_KEY) as client:
        jobs = [client.create(f"queued clip {n}", duration=10) for n in range(5)]
    last = jobs[-1].id  # behind four 10 s clips on the one worker: still queued
    canceled = remote(server, "jobs", "cancel", last, key=OTHER_KEY)
    assert canceled["status"] == "canceled" and canceled["error"]["code"] == "canceled"
    assert remote(server, "jobs", "delete", last, key=OTHER_KEY) == {"id": last, "deleted": True}
    gone = runner.invoke(
        app, ["jobs", "show", last, "--server", server.url, "--api-key", OTHER_KEY]
    )
    assert gone.exit_code == 1 and "HTTP 404" in gone.stderr
    others = runner.invoke(
        app, ["jobs", "show", jobs[0].id, "--server", server.url, "--api-key", TEST_KEY]
    )
    assert others.exit_code == 1 and "HTTP 404" in others.stderr  # another key's job


def test_client_lists_retrieves_and_deletes_videos(server: ServerProcess, tmp_path: Path) -> None:
    with Client(server.url, OTHER_KEY) as client:
        made = [client.create(f"page {n}", duration=5).id for n in range(3)]
        first = client.list(limit=2)
        assert [video["id"] for video in first.data] == made[::-1][:2]
        assert first.has_more and first.last_id == made[1]
        assert client.list(limit=1, after=first.last_id).data[0]["id"] == made[0]
        oldest_first = [video["id"] for video in client.list(limit=100, order="asc").data]
        assert oldest_first.index(made[0]) < oldest_first.index(made[2])
        assert client.retrieve(made[0])["prompt"] == "page 0"
        deleted = client.delete(made[0])
        assert deleted == {"id": made[0], "object": "video.deleted", "deleted": True}
        with pytest.raises(ClientError) as missing:
            client.retrieve(made[0])
        assert missing.value.status_code == 404 and made[0] in missing.value.message
        with pytest.raises(ClientError) as bad_limit:
            client.list(limit=500)
        assert bad_limit.value.status_code == 400 and "limit" in bad_limit.value.message
        done = client.wait(made[2], poll_interval=0.1, timeout=120)
        seen: list[tuple[int, int | None]] = []
        path = client.download(done, tmp_path / "p.mp4", on_bytes=lambda *got: seen.append(got))
        assert done.video is not None and seen[-1] == (path.stat().st_size, done.video.file_size)


def test_async_client_lists_retrieves_and_deletes_videos(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url, OTHER_KEY) as client:
            made = (await client.create("async page", duration=5)).id
            page = await client.list(limit=1)
            assert [video["id"] for video in page.data] == [made]
            assert (await client.retrieve(made))["prompt"] == "async page"
            assert (await client.delete(made))["deleted"] is True
            with pytest.raises(ClientError) as missing:
                await client.retrieve(made)
            assert missing.value.status_code == 404

    asyncio.run(scenario())


def test_generate_reports_the_servers_message_and_fails(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = kinema_env(tmp_path / "unused", Path("/nonexistent"))
    out = str(tmp_path / "x.mp4")
    bad_key = kinema(
        "generate", "p", "--server", server.url, "--api-key", "nope", "-o", out, env=env
    )
    assert bad_key.returncode == 1 and "API key" in bad_key.stderr
    args = ["--server", server.url, "--api-key", TEST_KEY, "--duration", "7", "-o", out]
    bad_duration = kinema("generate", "p", *args, env=env)
    assert bad_duration.returncode == 1 and "duration" in bad_duration.stderr


def test_worker_without_weights_fails_naming_the_setting(tmp_path: Path) -> None:
    env = kinema_env(tmp_path / "data", Path("/nonexistent"))
    env["KINEMA_MODEL"] = "ltx-2"
    env["KINEMA_LTX2_WEIGHTS"] = str(tmp_path / "no-weights-here")
    result = kinema("worker", env=env, timeout=120)
    assert result.returncode == 3
    assert "KINEMA_LTX2_WEIGHTS" in result.stdout + result.stderr


def test_worker_with_two_ranks_completes_a_job(tmp_path: Path, tiny_weights: Path) -> None:
    api = launch_server(tmp_path / "data", tiny_weights, "--no-worker")
    env = kinema_env(api.data_dir, tiny_weights)
    ranks = start_kinema(["worker", "--cpu-ranks", "2"], env, tmp_path / "ranks.log")
    try:
        with Client(api.url, TEST_KEY) as client:
            job = client.create("two ranks, one clip", duration=5)
            done = client.wait(job.id, poll_interval=0.1, timeout=180)
        assert done.status == "completed", (tmp_path / "ranks.log").read_text()
    finally:
        ranks.send_signal(signal.SIGTERM)
        assert ranks.wait(60) == 0
        api.stop()


def said(text: str) -> str:
    """Output as one line: the console wraps at 80 columns."""
    return " ".join(text.split())


def test_a_generate_cut_short_after_submitting_names_the_job_and_how_to_fetch_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "late.mp4"
    args = ["--server", server.url, "--api-key", TEST_KEY, "-o", str(out), "--timeout", "0.01"]
    result = runner.invoke(app, ["generate", "a slow sunrise", *args])
    assert result.exit_code == 1 and not out.exists()
    message = said(result.stderr)
    found = re.search(r"job (\S+): see where it stands with `kinema jobs show \1 --server", message)
    assert found, message
    job_id = found.group(1)
    assert f"`kinema jobs download {job_id} -o {out} --server {server.url}`" in message
    assert "Traceback" not in result.output
    with Client(server.url, TEST_KEY) as client:
        assert client.wait(job_id, poll_interval=0.1, timeout=120).status == "completed"
    fetched = remote(server, "jobs", "download", job_id, "-o", str(out))
    assert fetched == {"id": job_id, "path": str(out), "file_size": out.stat().st_size}
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]


def test_server_refusals_are_told_in_the_clis_terms(server: ServerProcess) -> None:
    no_key = runner.invoke(app, ["jobs", "list", "--server", server.url])
    assert no_key.exit_code == 1
    assert (
        f"the server at {server.url} needs an API key: pass --api-key KEY or set "
        "KINEMA_API_KEY" in said(no_key.stderr)
    )
    wrong_key = runner.invoke(app, ["jobs", "list", "--server", server.url, "--api-key", "nope"])
    assert wrong_key.exit_code == 1
    assert "does not accept this API key (from --api-key or KINEMA_API_KEY)" in said(
        wrong_key.stderr
    )
    assert "Authorization" not in no_key.stderr + wrong_key.stderr
    args = ["--server", server.url, "--api-key", TEST_KEY, "--model", "nope", "-o", "x.mp4"]
    unknown = runner.invoke(app, ["generate", "p", *args])
    assert unknown.exit_code == 1
    message = said(unknown.stderr)
    assert "--model: must be one of: tiny-ltx2, klingai/video-v2-6-pro-text-to-video" in message
    assert f"`kinema models --server {server.url}` lists them" in message


def test_models_marks_what_a_server_serves(server: ServerProcess) -> None:
    result = runner.invoke(app, ["models", "--server", server.url, "--json"])
    assert result.exit_code == 0, result.output
    served = {entry["id"]: entry["served"] for entry in json.loads(result.stdout)}
    assert served["tiny-ltx2"] and served["tiny-ltx2:fast"] and served[DEFAULT_MODEL]
    assert not served["ltx-2"] and not served["ltx-2:quality"] and not served["tiny-ltx2:quality"]


def test_the_in_process_worker_says_what_it_loads_and_prints_no_library_bars(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    phases: list[str] = []
    settings = Settings(data_dir=tmp_path / "data", model="tiny-ltx2")  # the model is built here
    with InProcessWorker(settings, on_phase=phases.append):
        pass
    assert phases == [
        "opening the jobs database",
        "loading torch and diffusers",
        "building the tiny model (first run only)",
        "loading the model",
    ]
    assert "Writing model shards" not in capfd.readouterr().err
    phases.clear()
    with InProcessWorker(settings, on_phase=phases.append):
        pass
    assert "building the tiny model (first run only)" not in phases


def test_serve_on_a_busy_port_fails_before_creating_a_key(
    tmp_path: Path, tiny_weights: Path
) -> None:
    data_dir = tmp_path / "data"
    env = kinema_env(data_dir, tiny_weights, KINEMA_API_KEYS="")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = kinema("serve", "--port", str(port), "--no-worker", env=env, timeout=120)
    assert result.returncode == 1
    message = said(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in message
    assert "--port" in message and "kin_" not in result.stdout + result.stderr
    assert not (data_dir / "kinema.db").exists()


def test_serve_prints_one_block_with_the_urls_and_the_key_it_created(
    tmp_path: Path, tiny_weights: Path
) -> None:
    api = launch_server(tmp_path / "data", tiny_weights, "--no-worker", KINEMA_API_KEYS="")
    try:
        log = api.output()
        block = log[log.index("kinema is serving") :].splitlines()[:8]
        rows = [line.strip("│ ") for line in block]
        assert re.fullmatch(rf"API\s+{re.escape(api.url)}", rows[1])
        assert re.fullmatch(rf"playground\s+{re.escape(api.url)}/", rows[2])
        assert re.fullmatch(r"model\s+tiny-ltx2", rows[3])
        key_row = re.fullmatch(r"API key\s+(kin_\S+)", rows[4])
        assert key_row, block
        raw_key = key_row.group(1)
        assert log.count(raw_key) == 1 and "shown only this once" in rows[5]
        with Client(api.url, raw_key) as client:
            assert client.list().data == []  # the printed key works
    finally:
        api.stop()
