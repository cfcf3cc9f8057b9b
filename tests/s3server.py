"""A moto S3 server on loopback, in this process, for tests of the S3 artifact store.

    with moto_s3_server() as endpoint:   # "http://127.0.0.1:<port>"
        ...

`fake_aws_env(monkeypatch, endpoint)` points boto3 at it with fake credentials (and away from
any real ~/.aws configuration); `create_bucket(endpoint)` makes a fresh, uniquely named bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
UNSET_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Start moto's threaded server on 127.0.0.1 (a free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def fake_aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> None:
    """Fake credentials and the endpoint, set the way a deployment sets them (environment)."""
    for name in UNSET_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)


def s3_client(endpoint: str) -> object:
    """A client of the moto server with the fake credentials (independent of the environment)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=FAKE_ENV["AWS_DEFAULT_REGION"],
    )


def create_bucket(endpoint: str) -> str:
    """A fresh bucket with a unique name."""
    name = f"kinema-test-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name
