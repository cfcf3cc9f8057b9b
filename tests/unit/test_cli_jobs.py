"""`kinema jobs …` and `kinema keys …` on a local data dir (no server), through CliRunner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from kinema.catalog.registry import LTXV_ALIASES
from kinema.cli import app
from kinema.cli.app import complete_model
from kinema.cli.jobs_display import RemoteJobs
from kinema.client import Client
from kinema.config import Settings
from kinema.domain import ApiKey, GenerationRequest, Job, JobStatus, VideoArtifact
from kinema.errors import ClientError
from kinema.service import Services
from kinema.wiring import build_services

runner = CliRunner()
CLIP_BYTES = 4321


@dataclass
class LocalData:
    """A data dir with two keys' jobs in it, made through kinema's own services."""

    data_dir: Path
    services: Services
    alice: ApiKey
    bob: ApiKey

    def submit(self, owner: ApiKey, prompt: str) -> Job:
        request = GenerationRequest(model="tiny-ltx2", prompt=prompt, duration=10, seed=7)
        return self.services.jobs.submit(owner, request)

    def start(self, job: Job, progress: float = 40.0) -> None:
        lease = self.services.store.claim(["tiny-ltx2"], "worker-1", 60)
        assert lease is not None and lease.job.id == job.id
        self.services.store.report_progress(lease, progress, "denoising")

    def complete(self, job: Job) -> str:
        """Run `job` to completion with a stored clip; returns the clip's artifact key."""
        store, artifacts = self.services.store, self.services.artifacts
        lease = store.claim(["tiny-ltx2"], "worker-1", 60)
        assert lease is not None and lease.job.id == job.id
        staged = artifacts.staging_path(".mp4")
        staged.write_bytes(b"\0" * CLIP_BYTES)
        key = f"{job.id}/clip.mp4"
        artifacts.put(key, staged)
        artifact = VideoArtifact(key, "clip.mp4", CLIP_BYTES, 10.04, 96, 54, 24.0, True)
        store.complete(lease, artifact, {"timings": {"generate": 1.5, "encode": 0.25}})
        return key

    def invoke(self, *args: str) -> Result:
        return runner.invoke(app, [*args, "--data-dir", str(self.data_dir)])

    def json(self, *args: str) -> object:
        result = self.invoke(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalData]:
    services = build_services(Settings(data_dir=tmp_path / "data", model="tiny-ltx2"))
    alice, _ = services.keys.create("alice")
    bob, _ = services.keys.create("bob")
    yield LocalData(tmp_path / "data", services, alice, bob)
    services.close()


@pytest.fixture
def four_jobs(local: LocalData) -> list[Job]:
    """Oldest first: alice's completed, bob's running, alice's queued, bob's queued."""
    done = local.submit(local.alice, "a red fox trotting through fresh snow")
    local.complete(done)
    running = local.submit(local.bob, "a drummer on a rooftop")
    local.start(running)
    return [
        done,
        running,
        local.submit(local.alice, "rain on a window " * 10),
        local.submit(local.bob, "waves at night"),
    ]


def ids(listing: object) -> list[str]:
    assert isinstance(listing, dict)
    return [job["id"] for job in listing["data"]]


def test_jobs_list_shows_every_keys_jobs_newest_first(
    local: LocalData, four_jobs: list[Job]
) -> None:
    result = local.invoke("jobs", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "id",
        "status",
        "progress",
        "model",
        "prompt",
        "created",
        "clip",
        "owner",
    ]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == [job.id for job in reversed(four_jobs)]
    assert rows[0][1:4] == ["queued", "#1", "0%"] and rows[0][-1] == "bob"
    assert rows[2][1:3] == ["running", "40%"] and rows[2][-1] == "bob"
    assert rows[3][1:3] == ["completed", "100%"] and rows[3][-1] == "alice"
    assert "10.0 s, 4.3 kB" in lines[4]
    assert "rain on a window rain on a window rain…" in lines[2]  # long prompts are cut


def test_jobs_list_json_pages_orders_and_filters(local: LocalData, four_jobs: list[Job]) -> None:
    newest_first = [job.id for job in reversed(four_jobs)]
    first = local.json("jobs", "list", "--limit", "3")
    assert isinstance(first, dict)
    assert ids(first) == newest_first[:3]
    assert first["has_more"] is True and first["last_id"] == newest_first[2]
    rest = local.json("jobs", "list", "--limit", "3", "--after", newest_first[2])
    assert ids(rest) == newest_first[3:] and rest == {**rest, "has_more": False}
    assert ids(local.json("jobs", "list", "--order", "asc")) == newest_first[::-1]
    alices = local.json("jobs", "list", "--owner", "alice")
    assert ids(alices) == [four_jobs[2].id, four_jobs[0].id]
    assert ids(local.json("jobs", "list", "--owner", local.bob.id)) == [
        four_jobs[3].id,
        four_jobs[1].id,
    ]


def test_jobs_list_refuses_an_unknown_cursor(local: LocalData, four_jobs: list[Job]) -> None:
    result = local.invoke("jobs", "list", "--after", "no-such-job")
    assert result.exit_code == 1 and "no-such-job" in result.stderr


def test_jobs_show_json_has_status_params_timings_and_the_file(
    local: LocalData, four_jobs: list[Job]
) -> None:
    shown = local.json("jobs", "show", four_jobs[0].id)
    assert isinstance(shown, dict)
    assert shown["status"] == "completed" and shown["progress"] == 100
    assert shown["owner"] == local.alice.id and shown["owner_name"] == "alice"
    assert shown["prompt"] == "a red fox trotting through fresh snow"
    assert shown["params"] == {
        "aspect_ratio": "16:9",
        "duration": 10,
        "negative_prompt": None,
        "cfg_scale": 0.5,
        "generate_audio": True,
        "seed": 7,
        "loras": None,  # none ran
    }
    assert shown["timings"] == {"generate": 1.5, "encode": 0.25}
    video = shown["video"]
    assert Path(video["file"]).stat().st_size == CLIP_BYTES == video["file_size"]
    assert video["duration"] == 10.04 and video["has_audio"] is True
    assert shown["error"] is None and shown["created_at"] <= shown["completed_at"]
    queued = local.json("jobs", "show", four_jobs[3].id)
    assert isinstance(queued, dict)
    assert queued["status"] == "queued" and queued["queue_position"] == 1
    assert queued["video"] is None and queued["started_at"] is None


def test_jobs_show_prints_every_field(local: LocalData, four_jobs: list[Job]) -> None:
    result = local.invoke("jobs", "show", four_jobs[0].id)
    assert result.exit_code == 0, result.output
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if "  " in line)
    assert fields["status"].strip() == "completed"
    assert fields["owner"].strip() == f"alice ({local.alice.id})"
    for text in ("a red fox trotting", "aspect ratio", "seed", "generate 1.50 s, encode 0.25 s"):
        assert text in result.stdout
    assert f"4.3 kB ({CLIP_BYTES} bytes)" in result.stdout
    assert str(local.data_dir / "artifacts" / four_jobs[0].id / "clip.mp4") in result.stdout


def test_jobs_show_an_unknown_id_fails(local: LocalData) -> None:
    result = local.invoke("jobs", "show", "no-such-job")
    assert result.exit_code == 1 and "'no-such-job' not found" in result.stderr


def test_jobs_cancel_ends_a_queued_job_and_asks_a_running_one_to_stop(
    local: LocalData, four_jobs: list[Job]
) -> None:
    queued, running = four_jobs[2], four_jobs[1]
    canceled = local.json("jobs", "cancel", queued.id)
    assert isinstance(canceled, dict)
    assert canceled["status"] == "canceled" and canceled["error"]["code"] == "Canceled"
    result = local.invoke("jobs", "cancel", running.id)
    assert result.exit_code == 0, result.output
    assert f"{running.id}: running (stops at its next step)" in result.stderr
    stored = local.services.store.get_job(running.id)
    assert stored is not None and stored.cancel_requested
    assert stored.status is JobStatus.RUNNING


def test_the_top_level_cancel_is_the_same_command(local: LocalData, four_jobs: list[Job]) -> None:
    result = local.invoke("cancel", four_jobs[3].id)
    assert result.exit_code == 0 and f"{four_jobs[3].id}: canceled" in result.stderr
    missing = local.invoke("cancel", "no-such-job")
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_jobs_delete_hides_the_job_and_removes_its_files(
    local: LocalData, four_jobs: list[Job]
) -> None:
    done = four_jobs[0]
    clip = local.data_dir / "artifacts" / done.id / "clip.mp4"
    assert clip.is_file()
    assert local.json("jobs", "delete", done.id) == {"id": done.id, "deleted": True}
    assert not clip.exists()
    assert done.id not in ids(local.json("jobs", "list"))
    assert local.invoke("jobs", "show", done.id).exit_code == 1


def test_jobs_download_saves_a_completed_clip_and_refuses_a_pending_one(
    local: LocalData, four_jobs: list[Job], tmp_path: Path
) -> None:
    out = tmp_path / "fox.mp4"
    saved = local.json("jobs", "download", four_jobs[0].id, "-o", str(out))
    assert saved == {"id": four_jobs[0].id, "path": str(out), "file_size": CLIP_BYTES}
    assert out.read_bytes() == b"\0" * CLIP_BYTES
    queued = local.invoke("jobs", "download", four_jobs[3].id, "-o", str(tmp_path / "q.mp4"))
    assert queued.exit_code == 1
    assert "has no clip to download (it is queued)" in " ".join(queued.stderr.split())
    assert not (tmp_path / "q.mp4").exists()
    into_a_folder = local.invoke("jobs", "download", four_jobs[0].id, "-o", str(tmp_path))
    assert into_a_folder.exit_code == 2
    assert "is a directory" in " ".join(into_a_folder.output.replace("│", " ").split())


def test_ids_that_begin_with_a_dash_are_taken_as_ids(local: LocalData) -> None:
    request = GenerationRequest(model="tiny-ltx2", prompt="dashing", seed=1)
    dashed = Job("-lead-dash-id-of-32-characters-x", local.alice.id, request, JobStatus.QUEUED, 1.0)
    local.services.store.add_job(dashed)
    shown = local.json("jobs", "show", dashed.id)
    assert isinstance(shown, dict) and shown["prompt"] == "dashing"
    assert local.invoke("jobs", "cancel", dashed.id).exit_code == 0
    assert local.invoke("cancel", dashed.id).exit_code == 0
    assert local.json("jobs", "list", "--after", dashed.id) == {
        "data": [],
        "has_more": False,
        "last_id": None,
    }
    assert local.json("jobs", "delete", dashed.id) == {"id": dashed.id, "deleted": True}


def test_extend_and_remix_refuse_before_the_model_loads(
    local: LocalData, four_jobs: list[Job], tmp_path: Path
) -> None:
    done, running, queued = four_jobs[0], four_jobs[1], four_jobs[2]
    out = ["-o", str(tmp_path / "longer.mp4")]
    missing = local.invoke("extend", "no-such-job", "--seconds", "2", *out)
    assert missing.exit_code == 1 and "generation 'no-such-job' not found" in missing.stderr
    pending = local.invoke("extend", queued.id, "--seconds", "2", *out)
    assert pending.exit_code == 1
    said = " ".join(pending.stderr.split())
    assert f"ID: {queued.id} is queued; only a completed clip can be extended" in said
    busy = local.invoke("remix", running.id, "--prompt", "a wolf", *out)
    assert busy.exit_code == 1
    assert "is running; only a completed clip can be remixed" in " ".join(busy.stderr.split())
    too_long = local.invoke("extend", done.id, "--seconds", "30", *out)
    assert too_long.exit_code == 1
    assert "--seconds: 30 s: tiny-ltx2 makes 1..20 s" in " ".join(too_long.stderr.split())
    nothing = local.invoke("extend", done.id, "--seconds", "0", *out)
    assert nothing.exit_code == 2 and "--seconds" in nothing.output
    assert not (local.data_dir / "models").exists()  # the tiny model was never built or loaded
    assert [job.id for job in local.services.store.list_jobs(None, newest_first=True)] == [
        job.id for job in reversed(four_jobs)
    ]  # nothing submitted


def test_owner_is_for_the_local_database_only(local: LocalData) -> None:
    result = local.invoke("jobs", "list", "--server", "http://127.0.0.1:9", "--owner", "alice")
    assert result.exit_code == 1 and "--owner" in result.stderr


def test_no_jobs_is_said_plainly(local: LocalData) -> None:
    result = local.invoke("jobs", "list")
    assert result.exit_code == 0 and result.stdout == "" and "no generations" in result.stderr
    assert local.json("jobs", "list") == {"data": [], "has_more": False, "last_id": None}


def test_keys_create_shows_the_key_once_and_its_webhook_secret(local: LocalData) -> None:
    result = local.invoke("keys", "create", "--name", "carol")
    assert result.exit_code == 0, result.output
    raw_key = result.stdout.strip()  # stdout is the key alone: KEY=$(kinema keys create …)
    carol = local.services.keys.authenticate(raw_key)
    secret = local.services.keys.webhook_secret(carol.id)
    assert secret is not None and secret.startswith("whsec_")
    assert secret in result.stderr and "Standard Webhooks" in result.stderr
    created = local.json("keys", "create", "--name", "dave")
    assert isinstance(created, dict)
    dave = local.services.keys.authenticate(created["key"])
    assert created["id"] == dave.id and created["name"] == "dave"
    assert created["webhook_secret"] == local.services.keys.webhook_secret(dave.id)
    assert created["revoked"] is False


def test_keys_create_points_at_the_keys_id_for_its_secret(local: LocalData) -> None:
    result = local.invoke("keys", "create", "--name", "alice")  # a second alice
    assert result.exit_code == 0, result.output
    created = local.services.keys.authenticate(result.stdout.strip())
    assert f"`kinema keys secret {created.id}` shows it again" in " ".join(result.stderr.split())
    shown = local.invoke("keys", "secret", created.id)
    assert shown.exit_code == 0 and shown.stdout.strip() == local.services.keys.webhook_secret(
        created.id
    )


def active_names(local: LocalData) -> list[tuple[str, str]]:
    return [(key.id, key.name) for key in local.services.keys.list() if not key.revoked]


def test_keys_revoke_refuses_a_name_several_keys_have(local: LocalData) -> None:
    second_alice, _ = local.services.keys.create("alice")
    refused = local.invoke("keys", "revoke", "alice")
    assert refused.exit_code == 1
    said = " ".join(refused.stderr.split())
    assert "2 active keys are named 'alice'" in said
    assert local.alice.id in said and second_alice.id in said and "--all" in said
    assert len(active_names(local)) == 3  # nothing revoked

    by_id = local.invoke("keys", "revoke", second_alice.id)
    assert by_id.exit_code == 0 and f"revoked key {second_alice.id} (alice)" in by_id.stderr
    assert active_names(local) == [(local.alice.id, "alice"), (local.bob.id, "bob")]
    by_name = local.invoke("keys", "revoke", "alice")  # the one active alice left
    assert by_name.exit_code == 0 and f"revoked key {local.alice.id} (alice)" in by_name.stderr
    assert active_names(local) == [(local.bob.id, "bob")]


def test_keys_revoke_all_revokes_every_key_of_the_name(local: LocalData) -> None:
    second_alice, _ = local.services.keys.create("alice")
    result = local.invoke("keys", "revoke", "alice", "--all")
    assert result.exit_code == 0, result.output
    assert f"revoked key {local.alice.id} (alice)" in result.stderr
    assert f"revoked key {second_alice.id} (alice)" in result.stderr
    assert active_names(local) == [(local.bob.id, "bob")]


def test_keys_list_json(local: LocalData) -> None:
    listed = local.json("keys", "list")
    assert isinstance(listed, list)
    assert [(k["id"], k["name"], k["revoked"]) for k in listed] == [
        (local.alice.id, "alice", False),
        (local.bob.id, "bob", False),
    ]
    assert all("webhook_secret" not in key for key in listed)


def test_keys_secret_prints_and_rotates_by_name_or_id(local: LocalData) -> None:
    keys = local.services.keys
    before = keys.webhook_secret(local.alice.id)
    shown = local.invoke("keys", "secret", "alice")
    assert shown.exit_code == 0 and shown.stdout.strip() == before
    assert "Standard Webhooks" in shown.stderr
    rotated = local.json("keys", "secret", local.alice.id, "--rotate")
    assert isinstance(rotated, dict)
    assert rotated["rotated"] is True and rotated["name"] == "alice"
    assert rotated["webhook_secret"] != before
    assert rotated["webhook_secret"] == keys.webhook_secret(local.alice.id)
    assert keys.webhook_secret(local.bob.id) != rotated["webhook_secret"]


def test_keys_secret_of_an_unknown_or_ambiguous_name_fails(local: LocalData) -> None:
    assert "no key 'zed'" in local.invoke("keys", "secret", "zed").stderr
    local.services.keys.create("alice")
    ambiguous = local.invoke("keys", "secret", "alice", "--rotate")
    assert ambiguous.exit_code == 1 and "several keys are named 'alice'" in ambiguous.stderr


def test_help_mentions_shell_completion() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    assert "Shell completion" in result.stdout


def test_model_ids_complete() -> None:
    assert complete_model("tiny-l") == [
        "tiny-ltx2",
        "tiny-ltx2:quality",
        "tiny-ltx-2.5",
        "tiny-ltx-2.5:quality",
        "tiny-ltx2:fast",
    ]
    assert complete_model("ltx-2.5") == ["ltx-2.5", "ltx-2.5:quality"]
    assert complete_model("wan") == ["wan-2.2", "wan-2.2:a14b"]
    assert "klingai/video-v2-6-pro-text-to-video" in complete_model("klingai/")
    completed = runner.invoke(
        app,
        [],
        prog_name="kinema",
        env={
            "_KINEMA_COMPLETE": "complete_bash",
            "COMP_WORDS": "kinema serve --model ltx",
            "COMP_CWORD": "3",
        },
    )
    assert completed.stdout.split() == [
        "ltx-2",
        "ltx-2:quality",
        "ltx-2.3",
        "ltx-2.3:quality",
        "ltx-2.5",
        "ltx-2.5:quality",
        "ltx-2:fast",
        *LTXV_ALIASES,
    ]


V2_CANCELED = {
    "id": "g1",
    "status": "error",
    "progress": 30,
    "error": {"name": "Canceled", "message": "the generation was canceled"},
    "meta": {"model": "ltx-2", "seed": 5, "stage": "canceled", "attempts": 1},
}


def v2_only_server(missing_route: dict[str, Any]) -> Client:
    """The real client of a server that has no /v1/videos (such as the hosted API): only v2."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/videos"):
            return httpx.Response(404, json=missing_route)
        assert request.url.path == "/v2/video/generations"
        assert request.url.params["generation_id"] == "g1"
        return httpx.Response(200, json=V2_CANCELED)

    return Client("http://hosted.example", "kin_key", transport=httpx.MockTransport(answer))


def test_show_falls_back_to_the_v2_poll_where_a_server_has_no_videos_api() -> None:
    v2_envelope = {"statusCode": 404, "path": "/v1/videos/g1", "message": "Not Found"}
    with v2_only_server(v2_envelope) as client:
        shown = RemoteJobs(client).show("g1")
    assert (shown.id, shown.status, shown.model, shown.stage) == (
        "g1",
        "canceled",
        "ltx-2",
        "canceled",
    )
    assert shown.error == {"code": "Canceled", "message": "the generation was canceled"}
    assert shown.params == {"seed": 5} and shown.video is None and shown.prompt is None


def test_show_reports_an_unknown_id_on_the_videos_api_without_falling_back() -> None:
    openai_404 = {
        "error": {
            "message": "no video 'g1'",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    with v2_only_server(openai_404) as client, pytest.raises(ClientError, match="no video 'g1'"):
        RemoteJobs(client).show("g1")
