"""The data dir holds webhook secrets and the signing key: what kinema creates there is readable
by its own user only."""

from __future__ import annotations

import stat
from pathlib import Path

from kinema.config import Settings
from kinema.domain import ApiKey, GenerationRequest
from kinema.wiring import build_services


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_a_file(settings: Settings) -> Path:
    services = build_services(settings)
    try:
        services.keys.create("alice")
        owner = ApiKey(id="alice", name="alice", created_at=0.0)
        job = services.jobs.submit(owner, GenerationRequest(model="tiny-ltx2", prompt="a kite"))
        staged = services.artifacts.staging_path(".mp4")
        staged.write_bytes(b"not really a video")
        services.artifacts.put(f"{job.id}/video.mp4", staged)
        return settings.artifacts_dir / job.id / "video.mp4"
    finally:
        services.close()


def test_a_new_data_dir_and_what_is_in_it_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "kinema", model="tiny-ltx2")
    video = store_a_file(settings)
    data_dir = settings.data_dir
    assert mode(tmp_path / "fresh") == 0o700
    assert mode(data_dir) == 0o700
    assert mode(settings.artifacts_dir) == 0o700
    assert mode(video.parent) == 0o700
    for path in (settings.database_path, settings.secret_path, video):
        assert mode(path) == 0o600, path
    for sidecar in data_dir.glob("kinema.db-*"):  # SQLite's WAL and shared memory
        assert mode(sidecar) == 0o600, sidecar
    assert not [p for p in data_dir.rglob("*") if mode(p) & 0o077], "readable by others"


def test_an_existing_data_dir_keeps_the_operators_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    data_dir.chmod(0o750)
    settings = Settings(data_dir=data_dir, model="tiny-ltx2")
    video = store_a_file(settings)
    assert mode(data_dir) == 0o750
    assert mode(settings.database_path) == 0o600
    assert mode(settings.artifacts_dir) == 0o700
    assert mode(video) == 0o600
