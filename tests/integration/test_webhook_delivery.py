"""Webhooks: signing (checked by the Standard Webhooks reference verifier), where callbacks may
go, and the deliverer's attempts, retries and give-up against a real HTTP endpoint on loopback."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from kinema.background.webhook_delivery import WebhookDeliverer
from kinema.config import Settings
from kinema.domain import ApiKey, GenerationRequest, Job, VideoArtifact
from kinema.server import create_app
from kinema.service import Services
from kinema.webhooks import (
    CallbackRefused,
    Destination,
    Unresolvable,
    check_callback_url,
    new_secret,
    resolve_destination,
)
from kinema.wiring import build_services
from tests.conftest import Clock, count_jobs
from tests.webhook_receiver import Receiver, webhook_receiver

PRIVATE_URLS = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://LOCALHOST:8080/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
]
NOT_HTTP = ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "example.com", ""]


def test_signatures_verify_with_the_standard_webhooks_reference() -> None:
    from kinema.webhooks import sign

    secret = new_secret()
    body = json.dumps({"id": "abc", "status": "completed"}).encode()
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_abc",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, "msg_abc", timestamp, body),
    }
    assert Webhook(secret).verify(body, headers) == {"id": "abc", "status": "completed"}
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(body, headers)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_destinations_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(CallbackRefused, match="private"):
        check_callback_url(url, allow_private=False)
    assert check_callback_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", NOT_HTTP)
def test_only_http_urls_are_accepted(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(CallbackRefused, match="http"):
            check_callback_url(url, allow_private)


def test_a_public_url_is_accepted() -> None:
    assert check_callback_url("https://hooks.example.com/k", False) == "https://hooks.example.com/k"


REAL_GETADDRINFO = socket.getaddrinfo


def fake_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Names only this test knows (.test never resolves for real); the rest resolve as usual."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_dns(monkeypatch, {"rebound.example.test": "10.0.0.7"})
    with pytest.raises(CallbackRefused, match="private"):
        resolve_destination("https://rebound.example.test/hook", allow_private=False)
    allowed = resolve_destination("https://rebound.example.test:8443/h?x=1", allow_private=True)
    assert allowed == Destination(
        url="https://10.0.0.7:8443/h?x=1",
        host="rebound.example.test:8443",
        server_name="rebound.example.test",
    )


def test_a_name_that_does_not_resolve_is_worth_a_retry() -> None:
    with pytest.raises(Unresolvable):
        resolve_destination("https://no-such-host.invalid/h", allow_private=False)


def test_a_delivery_connects_to_the_address_it_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with webhook_receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        services = _services(tmp_path)
        _, job = _finished_job(services, f"http://hooks.kinema.test:{port}/pinned")
        deliverer = WebhookDeliverer(services)
        real_resolve = resolve_destination

        def resolve_then_forget(url: str, allow_private: bool) -> Destination:
            """The name resolves for the check only: connecting by name would fail."""
            fake_dns(monkeypatch, {"hooks.kinema.test": "127.0.0.1"})
            try:
                return real_resolve(url, allow_private)
            finally:
                monkeypatch.setattr(socket, "getaddrinfo", REAL_GETADDRINFO)

        monkeypatch.setattr(
            "kinema.background.webhook_delivery.resolve_destination", resolve_then_forget
        )
        assert deliverer.deliver_one() is True
        deliverer.stop()
        [call] = receiver.wait_for(1)
    assert call.path == "/pinned"
    assert call.headers["host"] == f"hooks.kinema.test:{port}"
    done = services.store.get_job(job.id)
    assert done is not None and done.meta["webhook"]["state"] == "delivered"
    services.close()


# -- the API side: a callback_url on a request --------------------------------------------------


def _client(settings: Settings) -> tuple[TestClient, dict[str, str]]:
    client = TestClient(create_app(settings))
    _, raw = client.app.state.services.keys.create("hooks")  # type: ignore[attr-defined]
    return client, {"Authorization": f"Bearer {raw}"}


def test_a_private_callback_url_is_a_400_and_stores_nothing(settings: Settings) -> None:
    client, auth = _client(settings)
    with client:
        body = {"model": "tiny-ltx2", "prompt": "p", "callback_url": "http://127.0.0.1:1/h"}
        response = client.post("/v2/video/generations", json=body, headers=auth)
        assert response.status_code == 400, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["callback_url"]
        assert count_jobs(client.app.state.services.store) == 0  # type: ignore[attr-defined]


def test_a_callback_url_shows_as_a_pending_webhook_in_meta(settings: Settings) -> None:
    settings = settings.model_copy(update={"webhook_allow_private": True})
    client, auth = _client(settings)
    with client:
        body = {"model": "tiny-ltx2", "prompt": "p", "callback_url": "http://127.0.0.1:1/h"}
        created = client.post("/v2/video/generations", json=body, headers=auth)
        assert created.status_code == 200, created.text
        webhook = created.json()["meta"]["webhook"]
        assert webhook == {"url": "http://127.0.0.1:1/h", "state": "pending", "attempts": []}


# -- the deliverer ---------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver([500]) as running:
        yield running


def _services(tmp_path: Path, **settings: Any) -> Services:
    values = {"webhook_allow_private": True, "webhook_retry_seconds": 0.05, **settings}
    return build_services(Settings(data_dir=tmp_path / "data", model="tiny-ltx2", **values))


def _finished_job(services: Services, callback_url: str) -> tuple[ApiKey, Job]:
    key, _ = services.keys.create("owner")
    request = GenerationRequest(model="tiny-ltx2", prompt="a fox", seed=7)
    job = services.jobs.submit(key, request, callback_url)
    lease = services.store.claim(["tiny-ltx2"], "w", 30)
    assert lease is not None
    artifact = VideoArtifact(
        f"{job.id}/t.mp4", "x.mp4", 10, 5.0, 64, 64, 24.0, True, f"{job.id}/t.jpg"
    )
    services.store.complete(lease, artifact, {"timings": {"encode": 0.1}})
    return key, job


def _clock_at_end(services: Services, job: Job) -> Clock:
    """A clock at the moment `job` ended (its first delivery is due then)."""
    ended = services.store.get_job(job.id)
    assert ended is not None and ended.completed_at is not None
    return Clock(ended.completed_at)


def _retry_after(deliverer: WebhookDeliverer, clock: Clock, delay: float) -> None:
    """The next attempt is not due a little before `delay` has passed, and is once it has."""
    due = clock.now + delay
    clock.now = due - 0.001
    assert deliverer.deliver_one() is False, "an attempt before its retry was due"
    clock.now = due
    assert deliverer.deliver_one() is True, "no attempt once its retry was due"


def _webhook(services: Services, job_id: str) -> dict[str, Any]:
    job = services.store.get_job(job_id)
    assert job is not None
    return dict(job.meta["webhook"])


def test_a_failed_delivery_is_retried_then_recorded_as_delivered(
    tmp_path: Path, receiver: Receiver
) -> None:
    services = _services(tmp_path)
    key, job = _finished_job(services, f"{receiver.url}/hooks/kinema")
    clock = _clock_at_end(services, job)
    deliverer = WebhookDeliverer(services, clock=clock)
    assert deliverer.deliver_one() is True
    assert _webhook(services, job.id)["state"] == "pending"
    _retry_after(deliverer, clock, 0.05)
    deliverer.stop()

    calls = receiver.wait_for(2)
    assert [call.path for call in calls] == ["/hooks/kinema"] * 2
    secret = services.keys.webhook_secret(key.id)
    assert secret is not None
    payload = Webhook(secret).verify(calls[1].body, calls[1].headers)
    assert payload["id"] == job.id and payload["status"] == "completed"
    assert payload["video"]["url"].startswith("http://127.0.0.1:8000/files/")
    assert calls[0].headers["webhook-id"] == calls[1].headers["webhook-id"] == f"msg_{job.id}"
    assert calls[1].headers["webhook-timestamp"] == str(int(clock.now))
    webhook = _webhook(services, job.id)
    assert webhook["state"] == "delivered"
    assert [a["status_code"] for a in webhook["attempts"]] == [500, 204]
    assert [a["attempt"] for a in webhook["attempts"]] == [1, 2]
    assert webhook["attempts"][1]["at"] == round(clock.now, 3)
    assert deliverer.deliver_one() is False
    services.close()


def test_delivery_gives_up_after_the_bounded_time(tmp_path: Path) -> None:
    with webhook_receiver([500] * 10) as failing:
        services = _services(tmp_path, webhook_give_up_seconds=1.0)
        _, job = _finished_job(services, f"{failing.url}/h")
        clock = _clock_at_end(services, job)
        ended = clock.now
        deliverer = WebhookDeliverer(services, clock=clock)
        assert deliverer.deliver_one() is True
        # Retries 0.05 s, 0.1 s, 0.2 s, 0.4 s after each failure: the fifth attempt, 0.75 s
        # after the job ended, is the last, since the next would start 1.55 s after it.
        for delay in (0.05, 0.1, 0.2, 0.4):
            assert _webhook(services, job.id)["state"] == "pending"
            _retry_after(deliverer, clock, delay)
        clock.now += 3600
        assert deliverer.deliver_one() is False, "no attempt after giving up"
        deliverer.stop()
    webhook = _webhook(services, job.id)
    assert webhook["state"] == "failed"
    assert len(webhook["attempts"]) == 5
    assert all(a["at"] < ended + 1.0 for a in webhook["attempts"]), "none after the give-up time"
    assert all(a["status_code"] == 500 for a in webhook["attempts"])
    services.close()


def test_a_destination_that_became_private_is_refused_without_retries(tmp_path: Path) -> None:
    services = _services(tmp_path)
    _, job = _finished_job(services, "http://127.0.0.1:9/h")  # accepted while allowed
    strict = Settings(data_dir=tmp_path / "data", model="tiny-ltx2", webhook_allow_private=False)
    deliverer = WebhookDeliverer(dataclasses.replace(services, settings=strict))
    assert deliverer.deliver_one() is True
    assert deliverer.deliver_one() is False
    deliverer.stop()
    done = services.store.get_job(job.id)
    assert done is not None and done.meta["webhook"]["state"] == "failed"
    assert done.meta["webhook"]["attempts"][0]["error"].startswith("refused:")
    services.close()


def test_a_deployment_wide_webhook_url_serves_jobs_without_their_own(
    tmp_path: Path, receiver: Receiver
) -> None:
    services = _services(tmp_path, webhook_url=f"{receiver.url}/global")
    key, _ = services.keys.create("owner")
    request = GenerationRequest(model="tiny-ltx2", prompt="a fox", seed=7)
    own = services.jobs.submit(key, request, f"{receiver.url}/own")
    default = services.jobs.submit(key, request)
    assert own.callback_url == f"{receiver.url}/own"
    assert default.callback_url == f"{receiver.url}/global"
    services.close()
