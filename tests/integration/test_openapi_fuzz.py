"""Schemathesis over every operation of a real `kinema serve --no-worker`: every answer is one the
OpenAPI document names (status, content type, headers, body schema), none is a server error, and
a method a path does not serve is a 405 whose Allow header names those it does.

Schemathesis runs as its CLI (`st run`): all of its phases (coverage of each keyword and boundary,
fuzzing, and stateful sequences that create and then poll, follow, cancel and delete). The budget
keeps this well under two minutes on a two-core machine. The seed is fixed so that a failure
reproduces; KINEMA_FUZZ_SEED picks another.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, ServerProcess, launch_server

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "allow_header_conformance",
)
CASES_PER_OPERATION = 15
STATEFUL_MAX_STEPS = 6
DEFAULT_SEED = "20261202"
CONFIG = f"""
request-timeout = 10
# An event stream ends only when its job does, and no worker runs one here.
max-stream-events = 1

[phases.stateful]
max-steps = {STATEFUL_MAX_STEPS}

# Documented: with no worker the server is up but not ready.
[[operations]]
include-path = "/readyz"
checks.not_a_server_error.expected-statuses = ["2XX", "4XX", 503]
"""
RUN_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    # The API process never loads a model, and --no-worker starts no process that would.
    running = launch_server(data_dir, data_dir.parent / "no-weights", "--no-worker")
    yield running
    running.stop()


def schemathesis_run(url: str, config: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {TEST_KEY}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(CASES_PER_OPERATION),
        "--seed",
        os.environ.get("KINEMA_FUZZ_SEED", DEFAULT_SEED),
        "--no-color",
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        cwd=config.parent,  # its reports and caches stay in the test's directory
        check=False,
    )


def test_every_operation_answers_as_documented(api_server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    result = schemathesis_run(api_server.url, config)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert selected, report
    assert len(set(selected.groups())) == 1, report  # every documented operation ran
