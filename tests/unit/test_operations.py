"""Cancel, back-pressure, readiness and metrics through the real ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.domain import VideoArtifact
from kinema.server import create_app

PATH = "/v2/video/generations"
BODY = {"model": "tiny-ltx2", "prompt": "a lighthouse at night"}


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.services = client.app.state.services  # type: ignore[attr-defined]
        self.store = self.services.store
        self.keys = {name: self.services.keys.create(name)[1] for name in ("alice", "bob")}

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def create(self, name: str = "alice", **body: Any) -> Any:
        return self.client.post(PATH, json={**BODY, **body}, headers=self.headers(name))

    def cancel(self, generation_id: str, name: str = "alice") -> Any:
        params = {"generation_id": generation_id}
        return self.client.post(f"{PATH}/cancel", params=params, headers=self.headers(name))


def make_api(settings: Settings, **overrides: Any) -> Iterator[Api]:
    with TestClient(create_app(settings.model_copy(update=overrides))) as client:
        yield Api(client)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    yield from make_api(settings)


def test_canceling_a_queued_job_ends_it_at_once(api: Api) -> None:
    generation_id = api.create().json()["id"]
    body = api.cancel(generation_id).json()
    assert body["status"] == "error"
    assert body["error"]["name"] == "Canceled"
    headers = api.headers("alice")
    polled = api.client.get(PATH, params={"generation_id": generation_id}, headers=headers)
    assert polled.json()["error"]["name"] == "Canceled"
    assert api.store.claim(["tiny-ltx2"], "w", 30) is None


def test_canceling_a_running_job_asks_the_worker_to_stop(api: Api) -> None:
    generation_id = api.create().json()["id"]
    lease = api.store.claim(["tiny-ltx2"], "w", 30)
    assert lease is not None
    body = api.cancel(generation_id).json()
    assert body["status"] == "generating"
    assert api.store.report_progress(lease, 10.0, "denoising") is True  # the worker sees it
    api.store.mark_canceled(lease)
    assert api.cancel(generation_id).json()["error"]["name"] == "Canceled"


def test_cancel_of_another_keys_job_or_an_unknown_id_is_404(api: Api) -> None:
    generation_id = api.create().json()["id"]
    assert api.cancel(generation_id, name="bob").status_code == 404
    assert api.cancel("no-such-generation-000000000").status_code == 404
    assert api.client.post(f"{PATH}/cancel", headers=api.headers("alice")).status_code == 400
    job = api.store.get_job(generation_id)
    assert job is not None and job.status.value == "queued"


def test_a_full_per_key_queue_is_429_with_retry_after(settings: Settings) -> None:
    for api in make_api(settings, max_queued_per_key=2, retry_after_seconds=7):
        assert [api.create().status_code for _ in range(2)] == [200, 200]
        refused = api.create()
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["statusCode"] == 429 and "queued" in refused.json()["message"]
        assert api.create("bob").status_code == 200  # another key is not held back
        assert api.store.count_queued() == 3


def test_a_full_global_queue_is_429(settings: Settings) -> None:
    for api in make_api(settings, max_queued_total=1):
        assert api.create().status_code == 200
        assert api.create("bob").status_code == 429


def test_readyz_needs_a_live_worker_for_each_served_model(api: Api) -> None:
    not_ready = api.client.get("/readyz")
    assert not_ready.status_code == 503
    assert "workers:tiny-ltx2" in not_ready.json()["message"]
    api.store.register_worker("w1", ["tiny-ltx2"])
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "storage": "ok",
        "workers:tiny-ltx2": "ok",
    }


def test_metrics_report_queue_depth_statuses_and_workers(api: Api) -> None:
    for _ in range(3):
        api.create()
    api.store.claim(["tiny-ltx2"], "w", 30)
    api.store.register_worker("w", ["tiny-ltx2"])
    text = api.client.get("/metrics").text
    assert 'kinema_queue_depth{model="tiny-ltx2"} 2.0' in text
    assert 'kinema_running_jobs{model="tiny-ltx2"} 1.0' in text
    assert 'kinema_jobs{status="queued"} 2.0' in text
    assert 'kinema_live_workers{model="tiny-ltx2"} 1.0' in text


def test_metrics_histogram_stage_durations_of_completed_jobs(api: Api) -> None:
    api.create()
    lease = api.store.claim(["tiny-ltx2"], "w", 30)
    artifact = VideoArtifact("j/x.mp4", "x.mp4", 1, 5.0, 96, 54, 24.0, True)
    api.store.complete(lease, artifact, {"timings": {"generate": 0.3, "encode": 0.07}})
    text = api.client.get("/metrics").text
    assert 'kinema_stage_seconds_bucket{le="0.25",model="tiny-ltx2",stage="generate"} 0.0' in text
    assert 'kinema_stage_seconds_bucket{le="0.5",model="tiny-ltx2",stage="generate"} 1.0' in text
    assert 'kinema_stage_seconds_count{model="tiny-ltx2",stage="encode"} 1.0' in text
    assert 'kinema_stage_seconds_sum{model="tiny-ltx2",stage="generate"} 0.3' in text
