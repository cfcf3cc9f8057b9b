"""A client's image reference (an https URL or a `data:image/…;base64,` URI) turned into image
bytes kinema has verified: fetched once by the API process with the same address checks as
webhooks, bounded in size and time, and decoded as a JPEG, PNG or WebP image.

Every refusal is an `InputRefused` whose message names the reason; the caller adds the field."""

from __future__ import annotations

import base64
import binascii
import io
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
from PIL import Image

from kinema.outbound import (
    AddressRefused,
    Destination,
    OutboundRefused,
    Resolver,
    SchemeRefused,
    Unresolvable,
    resolve_destination,
)

MAX_PIXELS = 8192 * 8192
MIN_SIDE = 2
FORMAT_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# image/jpg is no registered type, but clients write it for JPEG often enough to take it too.
DATA_URI_PREFIXES = tuple(
    f"data:{media_type};base64," for media_type in (*FORMAT_MEDIA_TYPES.values(), "image/jpg")
)
REQUEST_HEADERS = {
    "accept": ", ".join(FORMAT_MEDIA_TYPES.values()),
    "accept-encoding": "identity",  # counted bytes are the image's bytes: no gzip to inflate
    "connection": "close",  # a pinned connection is never reused for another host name
    "user-agent": "kinema-inputs",
}

RefusalKind = Literal[
    "bad_url",
    "bad_scheme",
    "bad_data_uri",
    "refused_address",
    "unreachable",
    "timeout",
    "http_status",
    "too_many_redirects",
    "too_large",
    "too_small",
    "not_image",
]


class InputRefused(ValueError):
    """An image reference kinema will not use; `reason` is a human message naming why."""

    def __init__(self, kind: RefusalKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: RefusalKind = kind
        self.reason = reason


@dataclass(frozen=True)
class InputPolicy:
    allow_http: bool = False
    allow_private: bool = False
    max_bytes: int = 20_000_000
    timeout_seconds: float = 10.0  # the whole fetch, redirects included
    connect_timeout_seconds: float = 5.0
    max_redirects: int = 3
    max_pixels: int = MAX_PIXELS

    @property
    def schemes(self) -> tuple[str, ...]:
        return ("http", "https") if self.allow_http else ("https",)


@dataclass(frozen=True)
class InputImage:
    data: bytes  # the bytes as received
    media_type: str  # from the format found in the bytes, not from what the client declared
    width: int
    height: int


def fetch_image(
    reference: str,
    policy: InputPolicy,
    http: httpx.Client | None = None,
    resolve: Resolver | None = None,
) -> InputImage:
    """The verified image `reference` names: a data URI decoded, or a URL fetched under `policy`
    (through `http`, a fresh client by default; names resolved with `resolve`, the system
    resolver by default)."""
    if reference[:5].lower() == "data:":
        data = decode_data_uri(reference, policy.max_bytes)
    else:
        data = download(reference, policy, http, resolve)
    return verify_image(data, policy.max_bytes, policy.max_pixels)


def decode_data_uri(reference: str, max_bytes: int) -> bytes:
    """The bytes of a `data:image/jpeg|png|webp;base64,` URI, refused before decoding when the
    encoded text alone is longer than `max_bytes` can take. Whitespace in the data is skipped:
    MIME-style base64 breaks its lines every 76 characters."""
    header, comma, payload = reference.partition(",")
    payload = "".join(payload.split())
    if not comma or f"{header.lower()}," not in DATA_URI_PREFIXES:
        accepted = ", ".join(DATA_URI_PREFIXES)
        raise InputRefused("bad_data_uri", f"bad data URI: must start with one of {accepted}")
    if len(payload) > _base64_length(max_bytes):
        raise InputRefused("too_large", f"too large: more than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputRefused("bad_data_uri", "bad data URI: the base64 data is malformed") from None


def download(
    url: str,
    policy: InputPolicy,
    http: httpx.Client | None = None,
    resolve: Resolver | None = None,
) -> bytes:
    """The body `url` answers with, following at most `policy.max_redirects` redirects, each
    target checked (scheme, addresses after resolution) before kinema connects to it."""
    deadline = time.monotonic() + policy.timeout_seconds
    with _client(http) as client:
        for _ in range(policy.max_redirects + 1):
            destination = _checked_destination(url, policy, resolve)
            with _refusing_transport_errors(url, policy):
                body, location = _get(client, destination, policy, deadline)
            if location is None:
                return body
            url = _redirect_target(url, location)
    raise InputRefused(
        "too_many_redirects", f"too many redirects: more than {policy.max_redirects}"
    )


def verify_image(data: bytes, max_bytes: int, max_pixels: int = MAX_PIXELS) -> InputImage:
    """`data` as an `InputImage` if it is a whole JPEG, PNG or WebP image of at most `max_bytes`
    bytes and `max_pixels` pixels (checked before any pixel is decoded), at least 2x2."""
    if len(data) > max_bytes:
        raise InputRefused("too_large", f"too large: more than {max_bytes} bytes")
    with _opened(data) as image:
        media_type = FORMAT_MEDIA_TYPES[str(image.format)]
        width, height = image.size
        _check_dimensions(width, height, max_pixels)
        _decoding(image.verify)
    with _opened(data) as image:  # verify() leaves the image unusable: decode from a fresh one
        _decoding(image.load)
    return InputImage(data, media_type, width, height)


# -- fetching ---------------------------------------------------------------------------------


@contextmanager
def _client(http: httpx.Client | None) -> Iterator[httpx.Client]:
    if http is not None:
        yield http
        return
    with httpx.Client(trust_env=False, follow_redirects=False) as client:
        yield client


def _checked_destination(url: str, policy: InputPolicy, resolve: Resolver | None) -> Destination:
    try:
        return resolve_destination(url, policy.allow_private, policy.schemes, resolve)
    except SchemeRefused:
        allowed = " or ".join(f"{scheme}://" for scheme in policy.schemes)
        raise InputRefused(
            "bad_scheme",
            f"bad scheme: must be an {allowed} URL with a host or a data:image/…;base64, URI",
        ) from None
    except AddressRefused as exc:
        raise InputRefused("refused_address", f"refused address: {exc}") from None
    except OutboundRefused as exc:
        raise InputRefused("bad_url", f"not a valid URL: {exc}") from None
    except Unresolvable as exc:
        raise InputRefused("unreachable", f"unreachable: {exc}") from None


def _get(
    client: httpx.Client, destination: Destination, policy: InputPolicy, deadline: float
) -> tuple[bytes, str | None]:
    """(body, None) for a 2xx answer, (b"", location) for a redirect; refused otherwise."""
    # Each wait on the network is bounded by the time left; the whole deadline is also checked
    # between the chunks of the body, so a server that trickles bytes is cut off at it.
    remaining = _remaining(deadline, policy)
    timeout = httpx.Timeout(remaining, connect=min(policy.connect_timeout_seconds, remaining))
    extensions = {"sni_hostname": destination.server_name} if destination.server_name else {}
    request_headers = {**REQUEST_HEADERS, "host": destination.host}
    with client.stream(
        "GET",
        destination.url,
        headers=request_headers,
        timeout=timeout,
        extensions=extensions,
        follow_redirects=False,
    ) as response:
        location = response.headers.get("location")
        if response.is_redirect and location:
            return b"", location
        if not response.is_success:
            raise InputRefused(
                "http_status", f"HTTP status {response.status_code}: the server sent no image"
            )
        _check_headers(response.headers, policy.max_bytes)
        return _read_body(response, policy, deadline), None


def _check_headers(headers: httpx.Headers, max_bytes: int) -> None:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InputRefused(
            "not_image", f"not an image: sent with Content-Encoding {encoding}, not the image"
        )
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InputRefused("too_large", f"too large: {declared} bytes, more than {max_bytes}")


def _read_body(response: httpx.Response, policy: InputPolicy, deadline: float) -> bytes:
    received = bytearray()
    for chunk in response.iter_raw():
        received += chunk
        if len(received) > policy.max_bytes:
            raise InputRefused("too_large", f"too large: more than {policy.max_bytes} bytes")
        _remaining(deadline, policy)
    return bytes(received)


def _remaining(deadline: float, policy: InputPolicy) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _timed_out(policy)
    return remaining


def _timed_out(policy: InputPolicy) -> InputRefused:
    return InputRefused(
        "timeout", f"timed out: not fetched within {policy.timeout_seconds:g} seconds"
    )


@contextmanager
def _refusing_transport_errors(url: str, policy: InputPolicy) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException:
        raise _timed_out(policy) from None
    except httpx.HTTPError as exc:
        host = httpx.URL(url).host
        raise InputRefused("unreachable", f"unreachable: {host}: {exc}") from None


def _redirect_target(url: str, location: str) -> str:
    try:
        return str(httpx.URL(url).join(location))
    except (httpx.InvalidURL, ValueError):
        raise InputRefused("bad_url", "not a valid URL: redirected to a malformed URL") from None


def _base64_length(size: int) -> int:
    return 4 * math.ceil(size / 3)


# -- decoding ---------------------------------------------------------------------------------


@contextmanager
def _opened(data: bytes) -> Iterator[Image.Image]:
    try:
        image = Image.open(io.BytesIO(data), formats=tuple(FORMAT_MEDIA_TYPES))
    except Image.DecompressionBombError as exc:
        raise InputRefused("too_large", f"too large: {exc}") from None
    except Exception:  # Pillow raises many kinds of error on bytes that are not an image
        raise InputRefused("not_image", "not an image: not a JPEG, PNG or WebP image") from None
    with image:
        yield image


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputRefused(
            "too_large", f"too large: {width}x{height} pixels, more than {max_pixels} in all"
        )
    if min(width, height) < MIN_SIDE:
        raise InputRefused(
            "too_small", f"too small: {width}x{height} pixels, less than {MIN_SIDE}x{MIN_SIDE}"
        )


def _decoding(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as exc:  # as above: a broken image can fail in many ways
        raise InputRefused("not_image", f"not an image: the image data is broken ({exc})") from None
