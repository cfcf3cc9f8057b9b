"""How `kinema serve` hands its settings to the processes it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kinema.catalog.families.wan import WAN_22, WAN_22_A14B
from kinema.catalog.registry import LTX_2_QUALITY, weights_keys
from kinema.config import Settings
from kinema.wiring import settings_environment

# A value unlike the default for every setting: a setting added without an entry fails the test.
NON_DEFAULTS: dict[str, object] = {
    "data_dir": Path("/srv/kinema-data"),
    "model": "tiny-ltx2,ltx-2:quality",
    "host": "0.0.0.0",
    "port": 9123,
    "public_url": "https://videos.example.com",
    "api_keys": "k1,k2",
    "ltx2_weights": "/weights/ltx2",
    "ltx2_upsampler": "/weights/upsampler",
    "ltx2_distilled_lora": "/weights/lora.safetensors",
    "tiny_weights": "/weights/tiny",
    "weights": {"wan-2.2": "/models/wan22-ti2v"},
    "lora_dir": "/srv/loras",
    "loras_kept": 3,
    "steps": 12,
    "device": "cuda:1",
    "dtype": "bfloat16",
    "attention_backend": "_flash_3",
    "compile": "off",
    "fp8": True,
    "step_cache": "mag",
    "step_cache_threshold": 0.125,
    "vae_tiling": "on",
    "release_text_encoder": "off",
    "offload": "group",
    "store_url": "postgresql+psycopg://kinema@db:5432/kinema",
    "storage": "s3://bucket/prefix",
    "api_threads": 2,
    "max_queued_per_key": 7,
    "max_queued_total": 70,
    "retry_after_seconds": 3,
    "worker_liveness_seconds": 12.5,
    "lease_seconds": 45.0,
    "heartbeat_seconds": 2.5,
    "idle_wait_seconds": 0.5,
    "max_attempts": 5,
    "url_ttl_seconds": 600,
    "max_body_bytes": 1024,
    "max_output_pixels": 2560 * 1440,
    "input_max_bytes": 5_000_000,
    "input_timeout_seconds": 4.0,
    "input_allow_http": True,
    "input_allow_private": True,
    "progress_min_interval": 0.5,
    "webhook_url": "https://hooks.example.com/kinema",
    "webhook_allow_private": True,
    "webhook_timeout_seconds": 3.0,
    "webhook_retry_seconds": 1.5,
    "webhook_max_retry_seconds": 60.0,
    "webhook_give_up_seconds": 120.0,
    "retention_hours": 48.0,
    "housekeeping_seconds": 5.0,
}


def read_back(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a child process started with `env` reads."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_every_setting_has_a_non_default_value_here() -> None:
    assert set(NON_DEFAULTS) == set(Settings.model_fields)
    defaults = Settings()
    assert all(getattr(defaults, name) != value for name, value in NON_DEFAULTS.items())


def test_a_child_reads_every_setting_given_on_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KINEMA_STORE_URL", raising=False)
    given = Settings(**NON_DEFAULTS)  # type: ignore[arg-type]
    child = read_back(settings_environment(given), monkeypatch)
    assert child.model_dump() == given.model_dump()


def test_command_line_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_STORE_URL", "sqlite:////tmp/other.db")
    monkeypatch.setenv("kinema_port", "1234")
    given = Settings(store_url="postgresql+psycopg://kinema@db/kinema", port=8001)
    env = settings_environment(given)
    assert env["KINEMA_STORE_URL"] == "postgresql+psycopg://kinema@db/kinema"
    assert "kinema_port" not in env
    assert read_back(env, monkeypatch).port == 8001


def test_unset_optional_settings_stay_unset_and_other_variables_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KINEMA_API_KEY", "kin_for_the_cli")  # the CLI's, not a setting
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    env = settings_environment(Settings(store_url=None))
    assert "KINEMA_STORE_URL" not in env
    assert env["KINEMA_API_KEY"] == "kin_for_the_cli"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9"
    assert read_back(env, monkeypatch).retention_hours is None


def test_api_thread_calls_default_to_what_each_database_measured_best() -> None:
    assert Settings(store_url=None).api_thread_calls == 2
    assert Settings(store_url="postgresql+psycopg://kinema@db/kinema").api_thread_calls == 4
    assert Settings(store_url="postgres://kinema@db/kinema").api_thread_calls == 4
    assert Settings(store_url=None, api_threads=6).api_thread_calls == 6


def test_kinema_weights_names_a_model_and_the_presets_that_share_its_weights() -> None:
    settings = Settings(weights={"wan-2.2": "/models/ti2v", "ltx-2": "/models/ltx2"})
    assert weights_keys(LTX_2_QUALITY) == ("ltx-2:quality", "ltx-2")
    assert (
        settings.weights_for(weights_keys(LTX_2_QUALITY), LTX_2_QUALITY.weights) == "/models/ltx2"
    )
    assert settings.weights_for(weights_keys(WAN_22), WAN_22.weights) == "/models/ti2v"
    # A14B is another checkpoint, not a preset of TI2V-5B: the TI2V entry is not its weights.
    assert weights_keys(WAN_22_A14B) == ("wan-2.2:a14b",)
    assert settings.weights_for(weights_keys(WAN_22_A14B), WAN_22_A14B.weights) == (
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
    )
