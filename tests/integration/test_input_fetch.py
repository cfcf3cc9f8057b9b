"""Fetching input images from a real HTTP server on loopback: a real PNG, the total deadline against
a server that trickles or stalls, the size limit against an endless body, and redirect chains."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from kinema.input_media import InputImage, InputPolicy, InputRefused, fetch_image

LOOPBACK = InputPolicy(allow_http=True, allow_private=True)
CHUNK = 64 * 1024


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = png_bytes()


@dataclass
class ImageServer:
    base: str
    port: int
    closing: threading.Event
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes written per path
    finished: dict[str, threading.Event] = field(default_factory=dict)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def server() -> Iterator[ImageServer]:
    closing = threading.Event()
    image_server: ImageServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            image_server.requests.append((self.path, self.headers.get("host", "")))
            image_server.sent[path] = 0
            done = image_server.finished.setdefault(path, threading.Event())
            try:
                self._answer(path)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: what the limits are for
            finally:
                done.set()

        def _answer(self, path: str) -> None:
            if path == "/cat.png":
                self._headers(200, {"content-type": "image/png", "content-length": str(len(PNG))})
                self._write(path, PNG)
            elif path == "/trickle":  # a byte every 50 ms: never idle long enough to time out
                self._headers(200, {"content-type": "image/png"})
                for index in range(200):
                    if closing.wait(0.05):
                        return
                    self._write(path, PNG[index : index + 1])
            elif path == "/stall":  # a few bytes, then nothing
                self._headers(200, {"content-type": "image/png"})
                self._write(path, PNG[:16])
                closing.wait(5)
            elif path == "/endless":  # 50 MB without a Content-Length
                self._headers(200, {"content-type": "image/png"})
                for _ in range(50_000_000 // CHUNK):
                    self._write(path, b"\x00" * CHUNK)
            elif path == "/declared-huge":
                self._headers(200, {"content-length": "30000000"})
                self._write(path, PNG)
                closing.wait(5)
            elif path.startswith("/hops/"):
                left = int(path.removeprefix("/hops/"))
                self._headers(302, {"location": f"/hops/{left - 1}" if left else "/cat.png"})
            elif path == "/to":
                [location] = parse_qs(urlsplit(self.path).query)["location"]
                self._headers(302, {"location": location})
            else:
                self._headers(404, {"content-length": "0"})

        def _headers(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def _write(self, path: str, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            image_server.sent[path] += len(data)

        def log_message(self, *_: object) -> None:
            pass

    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = http_server.server_address[1]
    image_server = ImageServer(f"http://127.0.0.1:{port}", port, closing)
    thread = threading.Thread(target=http_server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield image_server
    finally:
        closing.set()
        http_server.shutdown()
        http_server.server_close()


def refused_within(seconds: float, url: str, policy: InputPolicy) -> tuple[InputRefused, float]:
    started = time.monotonic()
    with pytest.raises(InputRefused) as caught:
        fetch_image(url, policy)
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    return caught.value, elapsed


def test_a_real_png_is_fetched(server: ImageServer) -> None:
    image = fetch_image(f"{server.base}/cat.png", LOOPBACK)
    assert image == InputImage(PNG, "image/png", 32, 24)
    assert server.requests == [("/cat.png", f"127.0.0.1:{server.port}")]


def test_a_trickling_server_is_cut_off_by_the_total_deadline(server: ImageServer) -> None:
    policy = InputPolicy(allow_http=True, allow_private=True, timeout_seconds=0.5)
    refused, elapsed = refused_within(1.5, f"{server.base}/trickle", policy)
    assert refused.kind == "timeout"
    assert "0.5 seconds" in refused.reason
    assert elapsed >= 0.5
    assert server.sent["/trickle"] >= 3  # bytes kept coming: only the deadline could stop it


def test_a_stalled_server_is_cut_off_by_the_total_deadline(server: ImageServer) -> None:
    policy = InputPolicy(allow_http=True, allow_private=True, timeout_seconds=0.5)
    refused, _ = refused_within(1.5, f"{server.base}/stall", policy)
    assert refused.kind == "timeout"


def test_a_body_over_max_bytes_is_cut_off(server: ImageServer) -> None:
    policy = InputPolicy(allow_http=True, allow_private=True, max_bytes=300_000)
    refused, _ = refused_within(5, f"{server.base}/endless", policy)
    assert refused.kind == "too_large"
    assert "300000 bytes" in refused.reason
    assert server.finished["/endless"].wait(10)
    assert server.sent["/endless"] < 50_000_000 // 2  # the connection was dropped, not drained


def test_a_declared_length_over_the_limit_is_refused_before_reading(server: ImageServer) -> None:
    refused, _ = refused_within(3, f"{server.base}/declared-huge", LOOPBACK)
    assert refused.kind == "too_large"
    assert "30000000 bytes, more than 20000000" in refused.reason


def test_a_redirect_chain_is_followed(server: ImageServer) -> None:
    image = fetch_image(f"{server.base}/hops/2", LOOPBACK)
    assert image.data == PNG
    assert server.paths() == ["/hops/2", "/hops/1", "/hops/0", "/cat.png"]


def test_a_chain_longer_than_allowed_is_refused(server: ImageServer) -> None:
    refused, _ = refused_within(3, f"{server.base}/hops/3", LOOPBACK)
    assert refused.kind == "too_many_redirects"
    assert server.paths() == ["/hops/3", "/hops/2", "/hops/1", "/hops/0"]


def test_each_redirect_target_is_resolved_checked_and_pinned(server: ImageServer) -> None:
    names = {"images.kinema.test": "127.0.0.1"}  # .test never resolves for real

    def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [names[host]]

    to_name = f"{server.base}/to?location=http://images.kinema.test:{server.port}/cat.png"
    assert fetch_image(to_name, LOOPBACK, resolve=resolve).data == PNG
    assert server.requests[-1] == ("/cat.png", f"images.kinema.test:{server.port}")

    to_unknown = f"{server.base}/to?location=http://elsewhere.kinema.test/cat.png"
    with pytest.raises(InputRefused) as unknown:
        fetch_image(to_unknown, LOOPBACK, resolve=resolve)
    assert unknown.value.kind == "unreachable"

    to_ftp = f"{server.base}/to?location=ftp://images.kinema.test/cat.png"
    with pytest.raises(InputRefused) as ftp:
        fetch_image(to_ftp, LOOPBACK, resolve=resolve)
    assert ftp.value.kind == "bad_scheme"
    assert server.paths().count("/cat.png") == 1


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001"])
def test_loopback_spelled_otherwise_is_refused_after_resolution(
    server: ImageServer, host: str
) -> None:
    policy = InputPolicy(allow_http=True, allow_private=False)
    with pytest.raises(InputRefused) as caught:
        fetch_image(f"http://{host}:{server.port}/cat.png", policy)
    assert caught.value.kind == "refused_address"
    assert f"{host} resolves to a private address" in caught.value.reason
    assert server.requests == []
    assert fetch_image(f"http://{host}:{server.port}/cat.png", LOOPBACK).data == PNG
