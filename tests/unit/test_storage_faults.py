"""Storage that cannot be written: readiness says so (checked by a real write, cached), and what
clients are told never shows the server's paths."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kinema.config import Settings
from kinema.server import create_app
from kinema.service import WriteProbe
from kinema.storage import ArtifactStore
from kinema.wiring import open_artifacts
from tests.conftest import Clock


def break_staging(settings: Settings) -> Path:
    """Make the artifact store unwritable for real (as root, modes would not stop a write): its
    staging area becomes a plain file, so nothing can be written beneath it."""
    staging = settings.artifacts_dir / ".staging"
    shutil.rmtree(staging)
    staging.write_text("not a directory")
    return staging


def mend_staging(staging: Path) -> None:
    staging.unlink()
    staging.mkdir()


@pytest.fixture
def artifacts(settings: Settings) -> ArtifactStore:
    return open_artifacts(settings)


def test_the_write_probe_sees_unwritable_storage_and_caches_its_answer(
    settings: Settings, artifacts: ArtifactStore
) -> None:
    clock = Clock()
    probe = WriteProbe(artifacts, ttl_seconds=10, clock=clock)
    assert probe() == "ok"
    staging = break_staging(settings)
    clock.now += 5
    assert probe() == "ok"  # still the cached answer
    clock.now += 5
    assert probe() == "not writable: NotADirectoryError"
    mend_staging(staging)
    clock.now += 9.9
    assert probe().startswith("not writable")
    clock.now += 0.1
    assert probe() == "ok"
    assert artifacts.keys() == []  # the probe leaves nothing behind
    assert list(staging.iterdir()) == []


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        client.app.state.services.store.register_worker("w1", ["tiny-ltx2"])  # type: ignore[attr-defined]
        yield client


def test_readyz_fails_on_unwritable_storage_without_showing_paths(
    client: TestClient, settings: Settings
) -> None:
    assert client.get("/readyz").status_code == 200
    break_staging(settings)
    client.app.state.services.jobs.storage_probe = WriteProbe(  # type: ignore[attr-defined]
        client.app.state.services.artifacts  # type: ignore[attr-defined]
    )
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "storage: not writable" in response.json()["message"]
    assert str(settings.data_dir) not in response.text
