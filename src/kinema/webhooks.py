"""Webhook helpers shared by the service and the deliverer: Standard Webhooks signing secrets and
signatures (https://www.standardwebhooks.com), and the checks on where a callback may go."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

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
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise CallbackRefused("must be a URL without spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("must be an http:// or https:// URL with a host")
    if not allow_private:
        literal = _ip_literal(parts.hostname)
        if parts.hostname.lower() == "localhost" or (literal and _is_private(literal)):
            raise CallbackRefused("private, loopback and link-local destinations are not allowed")
    return url


@dataclass(frozen=True)
class Destination:
    """Where one delivery connects: the address checked at resolution, so a name cannot be
    re-resolved to somewhere else between the check and the connection (DNS rebinding)."""

    url: str  # the callback URL with its host replaced by the checked address
    host: str  # the Host header: the callback URL's own host[:port]
    server_name: str | None  # the TLS server name (SNI and certificate check) for https


class Unresolvable(OSError):
    """The callback's host name does not resolve now (may be transient: worth a retry)."""


def resolve_destination(url: str, allow_private: bool) -> Destination:
    """Resolve the callback's host once; refuse it if any address is private, loopback or
    link-local (unless `allow_private`); pin the connection to the first address."""
    check_callback_url(url, allow_private)
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Unresolvable(f"cannot resolve {hostname}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not allow_private and any(_is_private(address) for address in addresses):
        raise CallbackRefused(f"{hostname} resolves to a private address")
    pinned = addresses[0]
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return Destination(
        url=urlunsplit(parts._replace(netloc=netloc)),
        host=parts.netloc.rpartition("@")[2],
        server_name=hostname if parts.scheme == "https" else None,
    )


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast
