"""Input images: data URIs, image verification, and the URL checks and HTTP behaviour of a fetch,
over an httpx.MockTransport with an injected resolver (no sockets, no DNS)."""

from __future__ import annotations

import base64
import io
import random
import socket
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest
from PIL import Image

from kinema.input_media import (
    MAX_PIXELS,
    InputImage,
    InputPolicy,
    InputRefused,
    decode_data_uri,
    fetch_image,
    verify_image,
)
from kinema.outbound import OutboundRefused, check_outbound_url
from kinema.webhooks import CallbackRefused

PUBLIC = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
NAMES = {
    "cdn.example.com": PUBLIC,
    "other.example.com": "93.184.216.35",
    "v6.example.com": PUBLIC_V6,
    "internal.example.com": "10.0.0.5",
    "metadata.example.com": "169.254.169.254",
}
POLICY = InputPolicy()


def image_bytes(image_format: str, size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, image_format)
    return buffer.getvalue()


def noisy_image_bytes(image_format: str, size: tuple[int, int] = (64, 64)) -> bytes:
    """An image that does not compress away, so a cut lands in its pixel data."""
    pixels = random.Random(0).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, image_format)
    return buffer.getvalue()


def data_uri(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def png_claiming(width: int, height: int) -> bytes:
    """A valid 2x2 PNG whose header claims another size (what a decompression bomb declares)."""
    png = bytearray(image_bytes("PNG", (2, 2)))
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def resolver(names: dict[str, str] = NAMES) -> Callable[[str, int], Sequence[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [names[host]]

    return resolve


def no_resolution(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} should have been refused before resolution")


class Server:
    """A MockTransport that answers from a route table and records every request it sees."""

    def __init__(self, routes: dict[str, Callable[[httpx.Request], httpx.Response]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []
        self.client = httpx.Client(transport=httpx.MockTransport(self._answer), trust_env=False)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.routes[f"{request.headers['host']}{request.url.path}"](request)

    def fetch(self, url: str, policy: InputPolicy = POLICY) -> InputImage:
        return fetch_image(url, policy, self.client, resolver())


def serve(data: bytes, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    """An answer with a body as a transport gives one: a stream, read only by the client."""
    headers = {"content-length": str(len(data)), **headers}
    return lambda request: httpx.Response(200, content=iter([data]), headers=headers)


def redirect(location: str, status: int = 302) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, headers={"location": location})


def refusal(call: Callable[[], object]) -> InputRefused:
    with pytest.raises(InputRefused) as caught:
        call()
    return caught.value


# -- data URIs and verification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_format", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_a_data_uri_of_each_accepted_format_gives_its_bytes_and_size(
    image_format: str, media_type: str
) -> None:
    data = image_bytes(image_format, (8, 6))
    image = fetch_image(data_uri(media_type, data), POLICY, resolve=no_resolution)
    assert image == InputImage(data=data, media_type=media_type, width=8, height=6)


def test_the_media_type_comes_from_the_bytes_not_from_the_declared_type() -> None:
    jpeg = image_bytes("JPEG")
    image = fetch_image(data_uri("image/png", jpeg), POLICY)
    assert image.media_type == "image/jpeg"


def test_image_jpg_and_line_wrapped_base64_are_taken_as_clients_write_them() -> None:
    jpeg = image_bytes("JPEG")
    encoded = base64.encodebytes(jpeg).decode()  # MIME style: a line break every 76 characters
    assert "\n" in encoded
    image = fetch_image(f"data:image/jpg;base64,{encoded}", POLICY)
    assert (image.data, image.media_type) == (jpeg, "image/jpeg")


def test_the_data_uri_header_is_case_insensitive() -> None:
    png = image_bytes("PNG")
    uri = data_uri("image/png", png).replace("data:image/png;base64", "DATA:Image/PNG;Base64")
    assert fetch_image(uri, POLICY).data == png


@pytest.mark.parametrize(
    "header",
    [
        "data:image/gif;base64,",
        "data:text/plain;base64,",
        "data:image/png,",
        "data:image/png;charset=utf-8;base64,",
        "data:;base64,",
        "data:",
    ],
)
def test_other_data_uris_are_refused(header: str) -> None:
    encoded = base64.b64encode(image_bytes("PNG")).decode()
    refused = refusal(lambda: fetch_image(header + encoded, POLICY))
    assert refused.kind == "bad_data_uri"
    assert "data:image/png;base64," in refused.reason


@pytest.mark.parametrize(
    "payload", ["iVBORw0KGgo", "!!!!", "aGVs-bG8=", "aGVsbG8=é", "a===", "aGVsbG8"]
)
def test_malformed_base64_is_refused(payload: str) -> None:
    refused = refusal(lambda: decode_data_uri(f"data:image/png;base64,{payload}", 1000))
    assert refused.kind == "bad_data_uri"
    assert refused.reason == "bad data URI: the base64 data is malformed"


def test_decoding_nothing_is_not_an_image() -> None:
    refused = refusal(lambda: fetch_image("data:image/png;base64,", POLICY))
    assert refused.kind == "not_image"


def test_a_data_uri_over_the_limit_is_refused_before_it_is_decoded() -> None:
    # Not base64 at all: had it been decoded, it would be refused as malformed instead.
    huge = "data:image/png;base64," + "!" * 4_000
    refused = refusal(lambda: decode_data_uri(huge, max_bytes=2_000))
    assert refused.kind == "too_large"
    assert "2000 bytes" in refused.reason


def test_a_data_uri_at_the_limit_is_accepted_and_one_byte_over_is_not() -> None:
    png = image_bytes("PNG")
    uri = data_uri("image/png", png)
    assert fetch_image(uri, InputPolicy(max_bytes=len(png))).data == png
    refused = refusal(lambda: fetch_image(uri, InputPolicy(max_bytes=len(png) - 1)))
    assert refused.kind == "too_large"


@pytest.mark.parametrize(
    ("image_format", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")],
)
def test_verify_image_accepts_uploaded_bytes(image_format: str, media_type: str) -> None:
    data = image_bytes(image_format, (5, 9))
    assert verify_image(data, max_bytes=len(data)) == InputImage(data, media_type, 5, 9)


def test_verify_image_refuses_bytes_over_the_limit() -> None:
    data = image_bytes("PNG")
    refused = refusal(lambda: verify_image(data, max_bytes=len(data) - 1))
    assert refused.kind == "too_large"


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused(image_format: str) -> None:
    refused = refusal(lambda: verify_image(image_bytes(image_format), 1_000_000))
    assert refused.kind == "not_image"
    assert "JPEG, PNG or WebP" in refused.reason


@pytest.mark.parametrize(
    "data", [b"", b"hello, world", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b"<svg></svg>"]
)
def test_bytes_that_are_not_an_image_are_refused(data: bytes) -> None:
    assert refusal(lambda: verify_image(data, 1_000_000)).kind == "not_image"


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_image_is_refused(image_format: str) -> None:
    data = noisy_image_bytes(image_format)
    refused = refusal(lambda: verify_image(data[: len(data) * 2 // 3], 1_000_000))
    assert refused.kind == "not_image"


def test_a_jpeg_cut_in_its_pixel_data_is_refused_by_decoding_it() -> None:
    jpeg = noisy_image_bytes("JPEG")
    cut = jpeg[: len(jpeg) * 2 // 3]
    with Image.open(io.BytesIO(cut)) as image:
        image.verify()  # the header and verify() find nothing wrong: only a real load does
    refused = refusal(lambda: verify_image(cut, 1_000_000))
    assert refused.kind == "not_image"
    assert "truncated" in refused.reason


def test_a_png_whose_checksum_is_wrong_fails_verification() -> None:
    png = bytearray(noisy_image_bytes("PNG", (16, 16)))
    idat = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[idat - 4 : idat])
    png[idat + 4 + length] ^= 0xFF  # the chunk's CRC; its data, which load() reads, is intact
    refused = refusal(lambda: verify_image(bytes(png), 1_000_000))
    assert refused.kind == "not_image"
    assert "checksum" in refused.reason


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    side = 8192 + 1
    refused = refusal(lambda: verify_image(png_claiming(side, side), 1_000_000))
    # The pixel data is a 2x2 image's: decoding it would fail as broken, not as too large.
    assert refused.kind == "too_large"
    assert f"{side}x{side} pixels" in refused.reason


def test_a_bomb_beyond_pillows_own_limit_is_refused_as_too_large() -> None:
    refused = refusal(lambda: verify_image(png_claiming(100_000, 100_000), 1_000_000))
    assert refused.kind == "too_large"


def test_the_pixel_limit_is_the_policys() -> None:
    data = image_bytes("PNG", (40, 25))
    assert verify_image(data, 1_000_000, max_pixels=1000).width == 40
    refused = refusal(lambda: verify_image(data, 1_000_000, max_pixels=999))
    assert refused.kind == "too_large"
    assert InputPolicy().max_pixels == MAX_PIXELS == 8192 * 8192
    uri = data_uri("image/png", data)
    assert refusal(lambda: fetch_image(uri, InputPolicy(max_pixels=999))).kind == "too_large"


@pytest.mark.parametrize("size", [(1, 1), (1, 50), (50, 1)])
def test_an_image_under_2x2_is_refused(size: tuple[int, int]) -> None:
    refused = refusal(lambda: verify_image(image_bytes("PNG", size), 1_000_000))
    assert refused.kind == "too_small"
    assert verify_image(image_bytes("PNG", (2, 2)), 1_000_000).width == 2


# -- URL checks -----------------------------------------------------------------------------------


def test_http_is_refused_unless_the_policy_allows_it() -> None:
    server = Server({"cdn.example.com/cat.png": serve(image_bytes("PNG"))})
    refused = refusal(lambda: server.fetch("http://cdn.example.com/cat.png"))
    assert refused.kind == "bad_scheme"
    assert refused.reason == (
        "bad scheme: must be an https:// URL with a host or a data:image/…;base64, URI"
    )
    assert server.requests == []
    image = server.fetch("http://cdn.example.com/cat.png", InputPolicy(allow_http=True))
    assert image.media_type == "image/png"
    [request] = server.requests
    assert str(request.url) == f"http://{PUBLIC}/cat.png"
    assert "sni_hostname" not in request.extensions


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cdn.example.com/cat.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "cdn.example.com/cat.png",
        "https:///cat.png",
        "",
    ],
)
def test_other_schemes_are_refused(url: str) -> None:
    for policy in (POLICY, InputPolicy(allow_http=True, allow_private=True)):
        refused = refusal(lambda policy=policy: fetch_image(url, policy, resolve=no_resolution))
        assert refused.kind == "bad_scheme"


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a cat.png",
        "https://cdn.example.com/\ncat.png",
        "https://cdn.example.com:99999/cat.png",
        "https://cdn.example.com:0/cat.png",
        "https://cdn.example.com:https/cat.png",
    ],
)
def test_malformed_urls_are_refused(url: str) -> None:
    refused = refusal(lambda: fetch_image(url, POLICY, resolve=no_resolution))
    assert refused.kind == "bad_url"


PRIVATE_LITERALS = [
    "https://127.0.0.1/x.png",
    "https://127.8.9.10/x.png",
    "https://10.1.2.3/x.png",
    "https://172.16.5.4/x.png",
    "https://192.168.0.10/x.png",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/x.png",
    "https://0.0.0.0/x.png",
    "https://224.0.0.1/x.png",
    "https://[::1]/x.png",
    "https://[fe80::1]/x.png",
    "https://[fc00::1]/x.png",
    "https://[::ffff:127.0.0.1]/x.png",
    "https://[::ffff:10.0.0.1]/x.png",
    "https://localhost/x.png",
    "https://LocalHost:8443/x.png",
]


@pytest.mark.parametrize("url", PRIVATE_LITERALS)
def test_private_loopback_and_link_local_addresses_are_refused_before_resolution(url: str) -> None:
    refused = refusal(lambda: fetch_image(url, POLICY, resolve=no_resolution))
    assert refused.kind == "refused_address"
    assert "private" in refused.reason


def test_private_addresses_are_fetched_when_the_policy_allows_them() -> None:
    server = Server({"10.1.2.3/x.png": serve(image_bytes("PNG"))})
    policy = InputPolicy(allow_private=True)
    assert fetch_image("https://10.1.2.3/x.png", policy, server.client, no_resolution).width == 8
    assert str(server.requests[0].url) == "https://10.1.2.3/x.png"


@pytest.mark.parametrize("name", ["internal.example.com", "metadata.example.com"])
def test_a_name_that_resolves_to_a_private_address_is_refused(name: str) -> None:
    server = Server({})
    refused = refusal(lambda: server.fetch(f"https://{name}/cat.png"))
    assert refused.kind == "refused_address"
    assert f"{name} resolves to a private address" in refused.reason
    assert server.requests == []


def test_a_name_with_any_private_address_is_refused() -> None:
    def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC, "10.0.0.5"]

    refused = refusal(lambda: fetch_image("https://mixed.example.com/x", POLICY, resolve=resolve))
    assert refused.kind == "refused_address"


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    refused = refusal(lambda: Server({}).fetch("https://nowhere.example.com/cat.png"))
    assert refused.kind == "unreachable"
    assert "nowhere.example.com" in refused.reason


def test_the_general_check_takes_the_schemes_and_webhooks_keep_their_exception() -> None:
    assert check_outbound_url("http://cdn.example.com/", False, ("http", "https"))
    with pytest.raises(OutboundRefused, match="https://"):
        check_outbound_url("http://cdn.example.com/", False, ("https",))
    assert CallbackRefused is OutboundRefused


# -- fetching over HTTP -------------------------------------------------------------------------


def test_a_fetch_connects_to_the_checked_address_with_the_original_host() -> None:
    png = image_bytes("PNG", (12, 10))
    server = Server({"cdn.example.com/img/cat.png": serve(png, **{"content-type": "image/png"})})
    image = server.fetch("https://cdn.example.com/img/cat.png?size=large")
    assert image == InputImage(png, "image/png", 12, 10)
    [request] = server.requests
    assert str(request.url) == f"https://{PUBLIC}/img/cat.png?size=large"
    assert request.headers["host"] == "cdn.example.com"
    assert request.extensions["sni_hostname"] == "cdn.example.com"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["connection"] == "close"  # never reused for another name
    assert request.method == "GET"


def test_a_port_and_an_ipv6_address_are_pinned_too() -> None:
    server = Server({"v6.example.com:8443/cat.webp": serve(image_bytes("WEBP"))})
    assert server.fetch("https://v6.example.com:8443/cat.webp").media_type == "image/webp"
    [request] = server.requests
    assert str(request.url) == f"https://[{PUBLIC_V6}]:8443/cat.webp"
    assert request.headers["host"] == "v6.example.com:8443"
    assert request.extensions["sni_hostname"] == "v6.example.com"


def test_an_international_name_is_sent_as_idna() -> None:
    server = Server({"xn--bcher-kva.example:8443/x": serve(image_bytes("PNG"))})
    resolve = resolver({"xn--bcher-kva.example": PUBLIC})
    fetch_image("https://bücher.example:8443/x", POLICY, server.client, resolve)
    [request] = server.requests
    assert request.headers["host"] == "xn--bcher-kva.example:8443"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"


def test_the_bytes_decide_the_format_whatever_the_content_type() -> None:
    server = Server(
        {"cdn.example.com/cat.png": serve(image_bytes("GIF"), **{"content-type": "image/png"})}
    )
    assert refusal(lambda: server.fetch("https://cdn.example.com/cat.png")).kind == "not_image"


def test_redirects_are_followed_and_each_target_is_pinned() -> None:
    png = image_bytes("PNG")
    server = Server(
        {
            "cdn.example.com/start": redirect("/moved", 301),
            "cdn.example.com/moved": redirect("https://other.example.com/final.png", 307),
            "other.example.com/final.png": serve(png),
        }
    )
    assert server.fetch("https://cdn.example.com/start").data == png
    assert [str(request.url) for request in server.requests] == [
        f"https://{PUBLIC}/start",
        f"https://{PUBLIC}/moved",
        "https://93.184.216.35/final.png",
    ]
    assert [request.headers["host"] for request in server.requests] == [
        "cdn.example.com",
        "cdn.example.com",
        "other.example.com",
    ]
    assert server.requests[2].extensions["sni_hostname"] == "other.example.com"


def test_a_redirect_to_a_name_that_resolves_privately_is_refused() -> None:
    server = Server(
        {"cdn.example.com/cat.png": redirect("https://internal.example.com/secret.png")}
    )
    refused = refusal(lambda: server.fetch("https://cdn.example.com/cat.png"))
    assert refused.kind == "refused_address"
    assert "internal.example.com" in refused.reason
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "location",
    [
        "https://127.0.0.1/x.png",
        "https://[::1]/x.png",
        "https://localhost/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:192.168.1.1]/",
    ],
)
def test_a_redirect_to_a_private_literal_is_refused(location: str) -> None:
    server = Server({"cdn.example.com/cat.png": redirect(location)})
    refused = refusal(lambda: server.fetch("https://cdn.example.com/cat.png"))
    assert refused.kind == "refused_address"
    assert len(server.requests) == 1


@pytest.mark.parametrize("location", ["http://cdn.example.com/cat.png", "file:///etc/passwd"])
def test_a_redirect_to_a_scheme_not_allowed_is_refused(location: str) -> None:
    server = Server({"cdn.example.com/start": redirect(location)})
    refused = refusal(lambda: server.fetch("https://cdn.example.com/start"))
    assert refused.kind == "bad_scheme"
    assert len(server.requests) == 1


def test_too_many_redirects_are_refused() -> None:
    server = Server(
        {f"cdn.example.com/{hop}": redirect(f"/{hop + 1}") for hop in range(10)}
        | {"cdn.example.com/3": redirect("/image.png"), "cdn.example.com/image.png": serve(b"")}
    )
    # Three redirects are allowed: /0 → /1 → /2 → /3, then /3 → /image.png is a fourth.
    refused = refusal(lambda: server.fetch("https://cdn.example.com/0", InputPolicy()))
    assert refused.kind == "too_many_redirects"
    assert "more than 3" in refused.reason
    assert [request.url.path for request in server.requests] == ["/0", "/1", "/2", "/3"]
    server.requests.clear()
    server.routes["cdn.example.com/image.png"] = serve(image_bytes("PNG"))
    assert server.fetch("https://cdn.example.com/1").width == 8  # three redirects: fine


def test_a_redirect_without_a_location_is_an_http_status() -> None:
    server = Server({"cdn.example.com/x": lambda request: httpx.Response(302)})
    refused = refusal(lambda: server.fetch("https://cdn.example.com/x"))
    assert refused.kind == "http_status"
    assert "302" in refused.reason


@pytest.mark.parametrize("status", [304, 400, 403, 404, 500, 503])
def test_a_status_other_than_success_is_refused_with_it(status: int) -> None:
    server = Server({"cdn.example.com/x": lambda request: httpx.Response(status, content=b"no")})
    refused = refusal(lambda: server.fetch("https://cdn.example.com/x"))
    assert refused.kind == "http_status"
    assert f"HTTP status {status}" in refused.reason


def never_read() -> Iterator[bytes]:
    raise AssertionError("the body should not have been read")
    yield b""  # pragma: no cover


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": "20000001"}, content=never_read())

    server = Server({"cdn.example.com/x": answer})
    refused = refusal(lambda: server.fetch("https://cdn.example.com/x"))
    assert refused.kind == "too_large"
    assert "20000001 bytes" in refused.reason


def test_a_streamed_body_over_the_limit_is_cut_off() -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for number in range(1000):
            sent.append(number)
            yield b"\x00" * 1000

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    server = Server({"cdn.example.com/x": answer})
    refused = refusal(
        lambda: server.fetch("https://cdn.example.com/x", InputPolicy(max_bytes=5500))
    )
    assert refused.kind == "too_large"
    assert len(sent) == 6  # stopped at the chunk that went over


def test_an_encoded_body_is_refused() -> None:
    body = zlib.compress(image_bytes("PNG"))
    server = Server({"cdn.example.com/x": serve(body, **{"content-encoding": "deflate"})})
    refused = refusal(lambda: server.fetch("https://cdn.example.com/x"))
    assert refused.kind == "not_image"
    assert "deflate" in refused.reason


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ConnectError("connection refused"), "unreachable"),
        (httpx.RemoteProtocolError("peer closed"), "unreachable"),
        (httpx.ConnectTimeout("connect timed out"), "timeout"),
        (httpx.ReadTimeout("read timed out"), "timeout"),
    ],
)
def test_transport_failures_are_refusals(error: httpx.HTTPError, kind: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    refused = refusal(
        lambda: Server({"cdn.example.com/x": fail}).fetch("https://cdn.example.com/x")
    )
    assert refused.kind == kind
    if kind == "timeout":
        assert "10 seconds" in refused.reason
    else:
        assert refused.reason.startswith("unreachable: cdn.example.com")


def test_each_request_gets_the_time_left_and_the_connect_timeout() -> None:
    server = Server({"cdn.example.com/x": serve(image_bytes("PNG"))})
    server.fetch("https://cdn.example.com/x", InputPolicy(timeout_seconds=3.0))
    timeout = server.requests[0].extensions["timeout"]
    assert 2.9 < timeout["connect"] <= 3.0  # the time left, under the 5 s connect timeout
    assert 2.9 < timeout["read"] <= 3.0
    server.fetch("https://cdn.example.com/x", InputPolicy(connect_timeout_seconds=1.5))
    assert server.requests[1].extensions["timeout"]["connect"] == 1.5
