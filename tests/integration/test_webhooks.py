"""Webhooks from a real `kinema serve`: a finished clip is POSTed to its callback URL, signed with
the key's secret, retried after a failure, and the attempts show in the poll body's meta."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from kinema import Client
from kinema.service import KeyService, hash_key
from kinema.store.sql import open_store
from tests.conftest import TEST_KEY, ServerProcess, launch_server
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver([503]) as running:  # the first delivery fails, the retry succeeds
        yield running


@pytest.fixture(scope="module")
def hooked_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, receiver: Receiver
) -> Iterator[ServerProcess]:
    running = launch_server(
        tmp_path_factory.mktemp("webhooks") / "data",
        tiny_weights,
        KINEMA_WEBHOOK_ALLOW_PRIVATE="true",
        KINEMA_WEBHOOK_RETRY_SECONDS="0.2",
        KINEMA_WEBHOOK_URL=f"{receiver.url}/deployment",
    )
    yield running
    running.stop()


def webhook_secret(data_dir: Path) -> str:
    store = open_store(data_dir / "kinema.db")
    try:
        key = store.find_key(hash_key(TEST_KEY))
        assert key is not None
        secret = KeyService(store).webhook_secret(key.id)
    finally:
        store.close()
    assert secret is not None
    return secret


def wait_for_webhook_state(client: Client, job_id: str, state: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        webhook = client.get(job_id).meta.get("webhook") or {}
        if webhook.get("state") == state:
            return webhook
        time.sleep(0.1)
    raise AssertionError(f"webhook of {job_id} never became {state}")


def test_a_finished_clip_is_delivered_signed_after_one_retry(
    hooked_server: ServerProcess, receiver: Receiver
) -> None:
    with Client(hooked_server.url, TEST_KEY) as client:
        created = client.create(
            "a fox in snow", model="tiny-ltx2", callback_url=f"{receiver.url}/mine"
        )
        final = client.wait(created.id, timeout=120)
        assert final.status == "completed"
        webhook = wait_for_webhook_state(client, created.id, "delivered")
        polled = client.get(created.id)

    mine = [call for call in receiver.received if call.path == "/mine"]
    assert len(mine) == 2, "one failed attempt (503), one delivered"
    payload = Webhook(webhook_secret(hooked_server.data_dir)).verify(mine[1].body, mine[1].headers)
    assert payload["id"] == created.id and payload["status"] == "completed"
    assert payload["video"]["file_size"] == polled.video.file_size  # type: ignore[union-attr]
    video = httpx.get(payload["video"]["url"])
    assert video.status_code == 200 and len(video.content) == payload["video"]["file_size"]
    attempts = webhook["attempts"]
    assert isinstance(attempts, list)
    assert [attempt["status_code"] for attempt in attempts] == [503, 204]


def test_a_canceled_job_without_its_own_url_goes_to_the_deployment_s(
    hooked_server: ServerProcess, receiver: Receiver
) -> None:
    with Client(hooked_server.url, TEST_KEY) as client:
        blockers = [client.create(f"blocker {i}", model="tiny-ltx2") for i in range(2)]
        queued = client.create("never made", model="tiny-ltx2")
        client.cancel(queued.id)
        wait_for_webhook_state(client, queued.id, "delivered")
        for blocker in blockers:
            client.wait(blocker.id, timeout=120)
    verifier = Webhook(webhook_secret(hooked_server.data_dir))
    delivered = [
        verifier.verify(call.body, call.headers)
        for call in receiver.received
        if call.path == "/deployment"
    ]
    canceled = next(payload for payload in delivered if payload["id"] == queued.id)
    assert canceled["status"] == "error" and canceled["error"]["name"] == "Canceled"
