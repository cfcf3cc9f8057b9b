"""The public surface, and the rule that the API side never loads torch."""

from __future__ import annotations

import subprocess
import sys

import kinema


def test_public_surface_is_pinned() -> None:
    assert sorted(kinema.__all__) == [
        "AsyncClient",
        "Client",
        "ClientError",
        "Generation",
        "KinemaError",
        "Video",
        "__version__",
    ]


def test_the_api_app_serves_requests_without_importing_torch(tmp_path: object) -> None:
    script = f"""
import sys
from fastapi.testclient import TestClient
from kinema.server import create_app
from kinema.config import Settings
app = create_app(Settings(data_dir={str(tmp_path)!r}, model="tiny-ltx2"))
_, key = app.state.services.keys.create("k")
client = TestClient(app)
body = {{"model": "tiny-ltx2", "prompt": "p"}}
auth = {{"Authorization": "Bearer " + key}}
created = client.post("/v2/video/generations", json=body, headers=auth)
assert created.status_code == 200, created.text
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "av") if m in sys.modules)
print(",".join(heavy) or "none")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "none", result.stdout + result.stderr
