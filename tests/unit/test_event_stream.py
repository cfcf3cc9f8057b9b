"""The event stream of a job that is deleted while it is followed ends cleanly."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.server import create_app


def test_deleting_a_followed_job_ends_its_stream_with_a_404_event(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        _, raw = client.app.state.services.keys.create("alice")  # type: ignore[attr-defined]
        auth = {"Authorization": f"Bearer {raw}"}
        body = {"model": "tiny-ltx2", "prompt": "a paper boat"}
        job_id = client.post("/v2/video/generations", json=body, headers=auth).json()["id"]
        params = {"generation_id": job_id}
        with client.stream(
            "GET", "/v2/video/generations/events", params=params, headers=auth
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: progress"
            assert client.delete(f"/v1/videos/{job_id}", headers=auth).status_code == 200
            rest = [line for line in lines if line]
    events = [line.removeprefix("event: ") for line in rest if line.startswith("event: ")]
    assert events == ["not_found"]
    data = json.loads(
        next(
            line for line in rest if line.startswith("data: ") and "statusCode" in line
        ).removeprefix("data: ")
    )
    assert data["statusCode"] == 404
