"""`kinema serve`'s command-line options reach the worker processes it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from kinema import Client
from tests.conftest import TEST_KEY, kinema_env, launch_server
from tests.pg import fresh_database
from tests.s3server import create_bucket, fake_aws_env, moto_s3_server, s3_client

pytestmark = pytest.mark.slow


def test_store_and_storage_options_reach_the_worker(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KINEMA_STORE_URL", raising=False)
    monkeypatch.delenv("KINEMA_STORAGE", raising=False)
    with fresh_database("kinema_serve") as pg_url, moto_s3_server() as endpoint:
        fake_aws_env(monkeypatch, endpoint, tmp_path)
        bucket = create_bucket(endpoint)
        env = kinema_env(tmp_path / "data", tiny_weights)
        upgrade = [sys.executable, "-m", "kinema", "db", "upgrade", "--store", pg_url]
        subprocess.run(upgrade, env=env, check=True, capture_output=True, timeout=120)

        storage = f"s3://{bucket}/clips"
        server = launch_server(
            tmp_path / "data", tiny_weights, "--store", pg_url, "--storage", storage
        )
        try:
            with Client(server.url, TEST_KEY) as client:
                job = client.create("a lighthouse at dusk", model="tiny-ltx2")
                done = client.wait(job.id, poll_interval=0.2, timeout=180)
            assert done.status == "completed", (done.error, server.output())
        finally:
            server.stop()

        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT status FROM jobs WHERE id = :id"), {"id": job.id})
            assert rows.scalar_one() == "completed"
        engine.dispose()
        listed = s3_client(endpoint).list_objects_v2(Bucket=bucket, Prefix="clips/")  # type: ignore[attr-defined]
        keys = [item["Key"] for item in listed.get("Contents", [])]
        assert any(key.endswith(".mp4") and job.id in key for key in keys), keys
        assert not (tmp_path / "data" / "kinema.db").exists()


def test_the_log_level_reaches_the_worker_too(tmp_path: Path, tiny_weights: Path) -> None:
    """`--log-level warning` quiets the workers as well, so the ready block is the last word."""
    server = launch_server(tmp_path / "data", tiny_weights)  # with --log-level warning
    try:
        with Client(server.url, TEST_KEY) as client:
            done = client.wait(client.create("a quiet start").id, poll_interval=0.2, timeout=180)
        assert done.status == "completed"
    finally:
        server.stop()
    assert "serving tiny-ltx2" not in server.output()  # the worker's INFO line at start
