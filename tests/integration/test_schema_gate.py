"""On PostgreSQL the operator migrates: the server refuses an unmigrated schema until then."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kinema import Client
from tests.conftest import TEST_KEY, free_port, kinema_env, launch_server, start_kinema
from tests.pg import fresh_database


def test_serve_refuses_an_unmigrated_postgresql_until_db_upgrade(
    tmp_path: Path, tiny_weights: Path
) -> None:
    with fresh_database("kinema_gate") as url:
        env = kinema_env(tmp_path / "data", tiny_weights, KINEMA_STORE_URL=url)
        log = tmp_path / "refused.log"
        refused = start_kinema(["serve", "--no-worker", "--port", str(free_port())], env, log)
        assert refused.wait(60) == 1
        assert "kinema db upgrade" in log.read_text()

        upgrade = [sys.executable, "-m", "kinema", "db", "upgrade", "--store", url]
        done = subprocess.run(upgrade, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "is current" in done.stderr

        server = launch_server(tmp_path / "data", tiny_weights, "--no-worker", KINEMA_STORE_URL=url)
        try:
            with Client(server.url, TEST_KEY) as client:
                assert client.create("stored in PostgreSQL").status == "queued"
        finally:
            server.stop()
