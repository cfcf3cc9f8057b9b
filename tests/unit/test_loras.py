"""LoRAs per request: what a deployment offers (KINEMA_LORA_DIR), the refusals that name what
would work, and both contracts taking them (the tiny models running them:
tests/integration/test_lora_engines.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kinema.catalog.families.wan import TINY_WAN
from kinema.catalog.loras import every_offered, lora_error, offered
from kinema.catalog.registry import TINY_LTX2, TINY_LTX2_QUALITY
from kinema.cli import app
from kinema.config import Settings
from kinema.domain import ApiKey, LoraChoice
from kinema.server import create_app
from tests.conftest import count_jobs

OWNER = ApiKey(id="owner", name="owner", created_at=0.0)


# -- what a deployment offers ---------------------------------------------------------------------


def test_a_deployment_offers_the_safetensors_files_of_each_models_folder(lora_dir: Path) -> None:
    assert list(offered(lora_dir, "tiny-ltx2")) == ["glow", "grain"]
    assert list(offered(lora_dir, "ltx-2")) == [] and offered(None, "tiny-ltx2") == {}
    assert {folder: list(files) for folder, files in every_offered(lora_dir).items()} == {
        "tiny-ltx2": ["glow", "grain"],
        "tiny-wan-2.2": ["wan-style"],
    }
    assert TINY_LTX2_QUALITY.loras_folder == "tiny-ltx2"  # a preset runs its model's LoRAs


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ([LoraChoice("nope")], "no LoRA named 'nope' for tiny-ltx2; offered: glow, grain"),
        (
            [LoraChoice("wan-style")],
            "wan-style is a LoRA of tiny-wan-2.2, not of tiny-ltx2 (its LoRAs: glow, grain)",
        ),
        ([LoraChoice("glow")] * 2, "each LoRA may be named once"),
        ([LoraChoice(f"l{i}") for i in range(5)], "at most 4 LoRAs a request; got 5"),
        ([LoraChoice("glow", 2.5)], "glow: scale 2.5 is not in -2..2"),
    ],
    ids=["unknown", "other-model", "twice", "too-many", "scale"],
)
def test_what_cannot_run_is_named_with_what_would(
    lora_dir: Path, choices: list[LoraChoice], message: str
) -> None:
    error = lora_error(choices, TINY_LTX2, lora_dir)
    assert error is not None and (error.field, error.message) == ("loras", message)


def test_without_a_lora_dir_a_request_for_one_says_so() -> None:
    error = lora_error([LoraChoice("glow")], TINY_WAN, None)
    assert error and error.message == (
        "glow: this deployment offers no LoRAs (KINEMA_LORA_DIR is not set)"
    )
    assert lora_error([], TINY_WAN, None) is None


def test_kinema_loras_lists_them_with_their_models(lora_dir: Path) -> None:
    result = CliRunner().invoke(app, ["loras", "--lora-dir", str(lora_dir), "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert listed["glow"]["models"] == ["tiny-ltx2", "tiny-ltx2:quality"]
    assert listed["wan-style"]["models"] == ["tiny-wan-2.2"]
    table = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["loras", "--lora-dir", str(lora_dir)])
    words = " ".join(table.stdout.split())
    assert "grain" in words and f"LoRA folder: {lora_dir}" in words


# -- through the API ------------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings, lora_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"lora_dir": lora_dir}))) as client:
        yield client


def auth(client: TestClient) -> dict[str, str]:
    _, key = client.app.state.services.keys.create("first")  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {key}"}


def test_both_contracts_take_loras_and_the_job_keeps_them(client: TestClient) -> None:
    headers = auth(client)
    loras = [{"name": "glow", "scale": 0.8}, {"name": "grain"}]
    v2 = client.post(
        "/v2/video/generations",
        json={"model": "tiny-ltx2", "prompt": "a fox", "loras": loras},
        headers=headers,
    )
    assert v2.status_code == 200, v2.text
    store = client.app.state.services.store  # type: ignore[attr-defined]
    job = store.get_job(v2.json()["id"])
    assert job.request.loras == (LoraChoice("glow", 0.8), LoraChoice("grain", 1.0))
    form = {"prompt": "a fox", "size": "96x54", "loras": json.dumps(loras[:1])}
    v1 = client.post("/v1/videos", data=form, files={"x": ("x", b"")}, headers=headers)
    assert v1.status_code == 200, v1.text
    assert v1.json()["loras"] == [{"name": "glow", "scale": 0.8}]


def test_a_lora_the_model_cannot_run_is_a_400_and_stores_nothing(client: TestClient) -> None:
    headers = auth(client)
    body = {"model": "tiny-ltx2", "prompt": "a fox", "loras": [{"name": "wan-style"}]}
    refused = client.post("/v2/video/generations", json=body, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["errors"] == [
        {
            "field": "loras",
            "message": "wan-style is a LoRA of tiny-wan-2.2, not of tiny-ltx2 (its LoRAs: glow, "
            "grain)",
        }
    ]
    bad = client.post(
        "/v1/videos",
        json={"prompt": "a fox", "loras": [{"name": "glow", "bias": 1}]},
        headers=headers,
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("loras")
    assert count_jobs(client.app.state.services.store) == 0  # type: ignore[attr-defined]


def test_kinema_loras_says_so_when_nothing_is_offered(tmp_path: Path) -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["loras", "--lora-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"No LoRAs in {tmp_path}." in " ".join(result.stdout.split())
    assert "<KINEMA_LORA_DIR>/<model>/<name>.safetensors" in result.stdout
