"""Where kinema may connect on a client's behalf (webhook callbacks, input images): URL checks that
refuse private, loopback and link-local destinations, and name resolution that pins the connection
to the address it checked."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""Host name and port → the addresses it resolves to, as strings; raises OSError when it cannot."""

DEFAULT_PORTS = {"http": 80, "https": 443}


class OutboundRefused(ValueError):
    """A URL kinema will not connect to: malformed, a scheme not allowed, or a private
    destination."""


class SchemeRefused(OutboundRefused):
    """Not a URL with one of the allowed schemes and a host."""


class AddressRefused(OutboundRefused):
    """A private, loopback, link-local or multicast destination."""


class Unresolvable(OSError):
    """The host name does not resolve now (may be transient: worth a retry)."""


@dataclass(frozen=True)
class Destination:
    """Where one request connects: the address checked at resolution, so a name cannot be
    re-resolved to somewhere else between the check and the connection (DNS rebinding)."""

    url: str  # the URL with its host replaced by the checked address
    host: str  # the Host header: the URL's own host[:port]
    server_name: str | None  # the TLS server name (SNI and certificate check) for https


def check_outbound_url(url: str, allow_private: bool, schemes: Sequence[str]) -> str:
    """`url` if it is a URL with one of `schemes`, a host and a valid port, whose host is not a
    private, loopback or link-local address (unless `allow_private`); OutboundRefused otherwise.
    Names are not resolved here: `resolve_destination` checks the addresses they resolve to."""
    if any(ch <= " " or ch == "\x7f" for ch in url):
        raise OutboundRefused("must be a URL without spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        raise SchemeRefused(f"must be an {allowed} URL with a host")
    _check_port(parts)
    _ascii_host(parts.hostname)
    if not allow_private:
        literal = _ip_literal(parts.hostname)
        if parts.hostname.lower() == "localhost" or (literal and _is_private(literal)):
            raise AddressRefused("private, loopback and link-local destinations are not allowed")
    return url


def resolve_destination(
    url: str, allow_private: bool, schemes: Sequence[str], resolve: Resolver | None = None
) -> Destination:
    """Check `url`, resolve its host once (with `resolve`, the system resolver by default) and
    refuse it if any address is private, loopback or link-local (unless `allow_private`); pin the
    connection to the first address."""
    check_outbound_url(url, allow_private, schemes)
    parts = urlsplit(url)
    hostname = _ascii_host(parts.hostname or "")
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    literal = _ip_literal(hostname)
    addresses = [literal] if literal else _addresses(hostname, port, resolve or system_resolver)
    if not allow_private and any(_is_private(address) for address in addresses):
        raise AddressRefused(f"{hostname} resolves to a private address")
    pinned = addresses[0]
    pinned_host = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    netloc = f"{pinned_host}:{parts.port}" if parts.port else pinned_host
    return Destination(
        url=urlunsplit(parts._replace(netloc=netloc)),
        host=_host_header(parts, hostname),
        server_name=hostname if parts.scheme == "https" else None,
    )


def system_resolver(host: str, port: int) -> list[str]:
    # socket.getaddrinfo is looked up at each call, so tests can stand in for DNS.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _addresses(hostname: str, port: int, resolve: Resolver) -> list[Address]:
    try:
        found = resolve(hostname, port)
    except OSError as exc:
        raise Unresolvable(f"cannot resolve {hostname}: {exc}") from None
    if not found:
        raise Unresolvable(f"cannot resolve {hostname}: no addresses")
    return [ipaddress.ip_address(address) for address in found]


def _ascii_host(hostname: str) -> str:
    """The host name as sent in DNS, Host and SNI: IDNA (punycode) for an international name."""
    if hostname.isascii():
        return hostname
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise OutboundRefused("must have a host name that IDNA can encode") from None


def _host_header(parts: SplitResult, ascii_hostname: str) -> str:
    host = parts.netloc.rpartition("@")[2]
    if host.isascii():
        return host
    return f"{ascii_hostname}:{parts.port}" if parts.port else ascii_hostname


def _check_port(parts: SplitResult) -> None:
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise OutboundRefused("must have a port from 1 to 65535")


def _ip_literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_private(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast
