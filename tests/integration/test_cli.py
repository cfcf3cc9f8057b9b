"""The `kinema` command line: keys, models, generate (embedded and against a server)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import av
from typer.testing import CliRunner

from kinema import Client
from kinema.cli import app
from tests.conftest import TEST_KEY, ServerProcess, kinema_env, launch_server, start_kinema

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
    raw_key = created.stdout.strip().splitlines()[-1]
    assert raw_key.startswith("kin_")
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
