"""The benchmark scripts keep working: each runs small here and prints its one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PG_SERVER = os.environ.get(
    "KINEMA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
STAGES = {"text_encode", "stage1", "stage1_per_step", "upsample", "refine", "video_decode"}


def run_benchmark(script: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("args", "preset"),
    [
        pytest.param([], "fast", id="fast"),
        pytest.param(
            ["--preset", "quality", "--step-cache", "taylorseer"], "quality", id="quality"
        ),
    ],
)
def test_gpu_pipeline_runs_the_tiny_twin_on_a_cpu(args: list[str], preset: str) -> None:
    result = run_benchmark("gpu_pipeline.py", *args)
    assert (result["benchmark"], result["mode"], result["preset"]) == (
        "gpu_pipeline",
        "tiny",
        preset,
    )
    stages = result["stages_s"]
    assert isinstance(stages, dict)
    assert STAGES | {"audio_decode", "mp4_encode", "generate"} <= stages.keys()
    assert all(value >= 0 for value in stages.values())
    clip = result["clip"]
    assert isinstance(clip, dict) and clip["generated"][2] == 121
    (w1, h1, _), (w2, h2, refine_steps) = clip["stages"]
    assert (w1 * 2, h1 * 2, refine_steps) == (w2, h2, 3)
    assert result["total_s"] > 0 and result["ratio_vs_target_15s"] > 0
    features = result["features"]
    assert isinstance(features, dict) and features["compile"] == "off"  # auto: off on a CPU
    if "taylorseer" in args:
        assert features["step_cache"] == "taylorseer"


@pytest.mark.parametrize(
    ("args", "tiny", "stages", "has_audio"),
    [
        (["--model", "wan-2.2:a14b"], "tiny-wan-2.2", 1, False),
        (["--model", "kandinsky-6"], "tiny-kandinsky-6", 1, True),
        (["--model", "ltx-2.5", "--preset", "quality"], "tiny-ltx-2.5:quality", 2, True),
    ],
    ids=["wan-a14b", "kandinsky-6", "ltx-2.5-quality"],
)
def test_gpu_pipeline_runs_another_model_s_tiny_twin_on_a_cpu(
    args: list[str], tiny: str, stages: int, has_audio: bool
) -> None:
    result = run_benchmark("gpu_pipeline.py", *args)
    stands_for = args[1] + (":quality" if "quality" in args else "")
    assert (result["mode"], result["model"], result["stands_for"]) == ("tiny", tiny, stands_for)
    timings = result["stages_s"]
    assert isinstance(timings, dict) and {"stage1", "generate", "mp4_encode"} <= timings.keys()
    clip = result["clip"]
    assert isinstance(clip, dict) and clip["generated"][2] == 121
    assert len(clip["stages"]) == stages
    components = result["components"]
    assert isinstance(components, dict) and isinstance(components["parameters"], dict)
    assert ("audio_vae" in components["parameters"]) == has_audio


def test_encode_benchmark_compares_with_ffmpeg_when_present() -> None:
    result = run_benchmark("encode.py", "--frames", "9", "--width", "128", "--height", "72")
    assert result["benchmark"] == "encode" and result["frames"] == 9
    assert result["kinema_s"] > 0
    if result["ffmpeg_s"] is not None:
        expected = result["kinema_s"] / result["ffmpeg_s"]  # both rounded to the millisecond
        assert result["ratio_vs_ffmpeg"] == pytest.approx(expected, rel=0.05)


def test_claim_latency_benchmark_runs_against_postgresql() -> None:
    result = run_benchmark("claim_latency.py", "--jobs", "300", "--claims", "30")
    assert result["benchmark"] == "claim_latency" and result["backend"] == "postgresql"
    assert result["claims"] == 30 and result["claim_ms"]["p50"] > 0
    assert result["ratio_p50"] == pytest.approx(
        result["claim_ms"]["p50"] / result["select1_ms"]["p50"], rel=0.05
    )


def test_api_overhead_benchmark_compares_with_a_bare_endpoint() -> None:
    result = run_benchmark("api_overhead.py", "--requests", "200", "--concurrency", "4")
    assert result["benchmark"] == "api_overhead" and result["requests"] == 200
    for name in ("bare", "poll", "create"):
        assert result[name]["rps"] > 0 and result[name]["p99_ms"] >= result[name]["p50_ms"]
    assert result["poll_rps_ratio_vs_bare"] == pytest.approx(
        result["poll"]["rps"] / result["bare"]["rps"], abs=0.002
    )


def test_metrics_scrape_benchmark_compares_with_the_full_scan() -> None:
    result = run_benchmark("metrics_scrape.py", "--jobs", "40", "--scrapes", "3")
    assert result["benchmark"] == "metrics_scrape" and result["completed_jobs"] == 40
    assert result["scrape_ms"] > 0 and result["reference_full_scan_ms"] > 0
    assert result["ratio_scrape_vs_scan"] == pytest.approx(
        result["scrape_ms"] / result["reference_full_scan_ms"], rel=0.05
    )


LOAD_CLIENTS = [
    pytest.param(["--client", "asyncio"], "asyncio", id="asyncio-sqlite"),
    pytest.param(["--client", "asyncio", "--store", PG_SERVER], "asyncio", id="asyncio-postgresql"),
    pytest.param(["--client", "wrk"], "wrk", id="wrk-sqlite"),  # scripts/setup.sh installs it
]


@pytest.mark.parametrize(("args", "client"), LOAD_CLIENTS)
def test_load_benchmark_prints_kinema_and_the_bare_endpoint_side_by_side(
    args: list[str], client: str
) -> None:
    result = run_benchmark(
        "load.py", "--jobs", "3", "--connections", "4", "--seconds", "1", "--json", *args
    )
    assert result["benchmark"] == "load" and result["client"] == client
    assert result["store"] == ("postgresql" if "--store" in args else "sqlite")
    (level,) = result["levels"]
    assert level["connections"] == 4
    for side in ("bare", "poll", "create"):
        measured = level[side]
        assert measured["requests"] > 0 and measured["p99_ms"] >= measured["p50_ms"]
        assert {"connection_errors", "status_errors", "server_cpu_ms_per_request"} <= set(measured)
    for probe in ("healthz_under_poll_load", "bare_probe_under_bare_load"):
        assert level[probe]["samples"] + level[probe]["errors"] >= 1
    assert level["poll_rps_ratio_vs_bare"] == pytest.approx(
        level["poll"]["rps"] / level["bare"]["rps"], abs=0.002
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "kandinsky-6", "--duration", "10"], "kandinsky-6 makes 1..5 s"),
        (["--model", "wan-2.2", "--fp8"], "--fp8: the wan engine has no such setting"),
        (["--model", "wan-2.2", "--preset", "quality"], "wan-2.2 has no quality preset"),
    ],
)
def test_gpu_pipeline_refuses_what_it_cannot_run_before_building(
    args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_pipeline.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    assert result.returncode != 0 and message in result.stderr and not result.stdout
