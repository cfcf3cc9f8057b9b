"""Webhook helpers shared by the service and the deliverer: Standard Webhooks signing secrets and
signatures (https://www.standardwebhooks.com), and the checks on where a callback may go."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"


class CallbackRefused(ValueError):
    """A callback URL kinema will not call: wrong scheme, or a private destination."""


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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("must be an http:// or https:// URL with a host")
    if not allow_private:
        literal = _ip_literal(parts.hostname)
        if parts.hostname.lower() == "localhost" or (literal and _is_private(literal)):
            raise CallbackRefused("private, loopback and link-local destinations are not allowed")
    return url


def check_destination(url: str, allow_private: bool) -> None:
    """At delivery: refuse a host that resolves to any private, loopback or link-local address."""
    parts = urlsplit(url)
    check_callback_url(url, allow_private)
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CallbackRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        if _is_private(ipaddress.ip_address(info[4][0])):
            raise CallbackRefused(f"{parts.hostname} resolves to a private address")


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast
