"""Webhook helpers shared by the service and the deliverer: Standard Webhooks signing secrets and
signatures (https://www.standardwebhooks.com), and the checks on where a callback may go (the
general ones, shared with input images, are in `kinema.outbound`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from kinema import outbound
from kinema.outbound import Destination, OutboundRefused, Unresolvable

__all__ = [
    "CALLBACK_SCHEMES",
    "SECRET_PREFIX",
    "CallbackRefused",
    "Destination",
    "Unresolvable",
    "check_callback_url",
    "new_secret",
    "resolve_destination",
    "sign",
]

SECRET_PREFIX = "whsec_"
CALLBACK_SCHEMES = ("http", "https")

# A callback URL kinema will not call: malformed, wrong scheme, or a private destination.
CallbackRefused = OutboundRefused


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def check_callback_url(url: str, allow_private: bool) -> str:
    """`url` if it is an http(s) URL whose host is not a private, loopback or link-local
    address (unless `allow_private`); CallbackRefused otherwise. Names are resolved at delivery."""
    return outbound.check_outbound_url(url, allow_private, CALLBACK_SCHEMES)


def resolve_destination(url: str, allow_private: bool) -> Destination:
    """Resolve the callback's host once; refuse it if any address is private, loopback or
    link-local (unless `allow_private`); pin the connection to the first address."""
    return outbound.resolve_destination(url, allow_private, CALLBACK_SCHEMES)
