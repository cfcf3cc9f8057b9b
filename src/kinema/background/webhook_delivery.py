"""Webhook delivery: when a job with a callback URL ends, POST its poll body there, signed.

Every API process runs one deliverer thread. Deliveries are an outbox in the jobs table, claimed
like jobs (a claim holds the delivery for a while), so replicas never send one attempt twice and
a crash mid-attempt only delays it. Failed attempts are retried with exponential backoff until
`webhook_give_up_seconds` after the job ended; every attempt is recorded in the job's
`meta["webhook"]`, which the poll endpoint shows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kinema import __version__
from kinema.background.loop import BackgroundLoop
from kinema.config import Settings
from kinema.contracts.aimlapi import render_generation
from kinema.domain import Job
from kinema.service import Services
from kinema.store_protocol import WebhookState
from kinema.webhooks import (
    CallbackRefused,
    Destination,
    Unresolvable,
    resolve_destination,
    sign,
)

logger = logging.getLogger("kinema.webhooks")

IDLE_POLL_SECONDS = 1.0
HOLD_MARGIN_SECONDS = 5.0  # a claim outlives the request's timeout by this much


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, as recorded in `meta["webhook"]["attempts"]`."""

    record: dict[str, Any]
    delivered: bool
    retryable: bool


def delivery_base_url(settings: Settings) -> str:
    """Where the signed download URL in a webhook's body points."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


class WebhookDeliverer:
    def __init__(
        self,
        services: Services,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._services = services
        self._clock = clock
        self._settings = services.settings
        self._given_http = http
        self._own_http: httpx.Client | None = None
        # A claim outlives the request, and a stop waits as long for the attempt under way.
        self._hold = self._settings.webhook_timeout_seconds + HOLD_MARGIN_SECONDS
        self._loop = BackgroundLoop(
            "kinema-webhooks", self.deliver_one, IDLE_POLL_SECONDS, self._hold
        )

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
        for client in (self._given_http, self._own_http):
            if client is not None:
                client.close()

    def _http(self) -> httpx.Client:
        """The HTTP client, made on the first delivery (its TLS setup costs an API start that
        may never send a webhook)."""
        if self._given_http is not None:
            return self._given_http
        if self._own_http is None:
            self._own_http = httpx.Client(follow_redirects=False, trust_env=False)
        return self._own_http

    def deliver_one(self) -> bool:
        """Claim one due delivery and attempt it; False when none was due."""
        job = self._services.jobs.claim_webhook(self._clock(), self._hold)
        if job is None:
            return False
        outcome = self._attempt(job)
        state, next_at = self._next_step(job, outcome)
        self._services.jobs.record_webhook_attempt(job.id, outcome.record, state, next_at)
        logger.info("webhook for job %s: %s (%s)", job.id, state, outcome.record)
        return True

    def _attempt(self, job: Job) -> Outcome:
        assert job.callback_url is not None
        number = len(job.meta.get("webhook", {}).get("attempts", [])) + 1
        record: dict[str, Any] = {"attempt": number, "at": round(self._clock(), 3)}
        started = time.perf_counter()
        allow_private = self._settings.webhook_allow_private
        try:
            destination = resolve_destination(job.callback_url, allow_private)
            response = self._post(job, destination)
        except CallbackRefused as exc:
            return Outcome({**record, "error": f"refused: {exc}"}, False, retryable=False)
        except (httpx.HTTPError, Unresolvable) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
            return Outcome(_timed(record, started), False, retryable=True)
        record["status_code"] = response.status_code
        return Outcome(_timed(record, started), response.is_success, retryable=True)

    def _post(self, job: Job, destination: Destination) -> httpx.Response:
        view = self._services.jobs.view(job, delivery_base_url(self._settings))
        body = json.dumps(render_generation(view)).encode()
        message_id = f"msg_{job.id}"  # the same for every retry, so receivers can deduplicate
        timestamp = int(self._clock())
        headers = {
            "host": destination.host,
            "content-type": "application/json",
            "user-agent": f"kinema-webhooks/{__version__}",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
        }
        secret = self._services.keys.webhook_secret(job.owner)
        if secret is not None:
            headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
        extensions = {"sni_hostname": destination.server_name} if destination.server_name else {}
        return self._http().post(
            destination.url,
            content=body,
            headers=headers,
            timeout=self._settings.webhook_timeout_seconds,
            extensions=extensions,
        )

    def _next_step(self, job: Job, outcome: Outcome) -> tuple[WebhookState, float | None]:
        if outcome.delivered:
            return "delivered", None
        if not outcome.retryable:
            return "failed", None
        settings = self._settings
        delay = min(
            settings.webhook_retry_seconds * 2 ** (outcome.record["attempt"] - 1),
            settings.webhook_max_retry_seconds,
        )
        next_at = self._clock() + delay
        ended = job.completed_at or job.created_at
        if next_at > ended + settings.webhook_give_up_seconds:
            return "failed", None
        return "pending", next_at


def _timed(record: dict[str, Any], started: float) -> dict[str, Any]:
    return {**record, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
