"""`kinema generate --image/--seconds/--size`, `kinema extend` and `kinema remix`, run as a person
runs them: here (a store and worker in the command's process, the tiny model) and against a real
`kinema serve`; the clips are probed and their frames compared with the image and the source.

The tiny model's VAE keeps a left-white/right-black picture in the first frame (see
test_image_to_video.py), so a first frame made from it correlates with it and not its mirror."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinema.media import probe
from tests.conftest import TEST_KEY, ServerProcess, kinema_env
from tests.pictures import correlation, frames, half_white

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 128, 64
FPS = 24  # the tiny model's rate
MIN_CORRELATION = 0.5
MAX_FRAME_DIFFERENCE = 6.0  # mean absolute difference (0..255) of a frame re-encoded once


FIRST = half_white(WIDTH, HEIGHT)
MIRROR = half_white(WIDTH, HEIGHT, mirrored=True)


def assert_first_frame_shows(clip: Path) -> None:
    first = frames(clip)[0]
    same, mirrored = correlation(first, FIRST), correlation(first, MIRROR)
    assert same > MIN_CORRELATION and same > mirrored, (same, mirrored)


@dataclass
class Kinema:
    """`kinema …` as a subprocess with one environment: here (a data dir) or with --server."""

    env: dict[str, str]
    server: list[str]
    cwd: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kinema", *args, *self.server],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def made(self, *args: str) -> dict[str, Any]:
        """A command that makes a clip, with --json: its summary."""
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        summary: dict[str, Any] = json.loads(result.stdout)
        assert summary["status"] == "completed", summary
        return summary


def make_fox_png(folder: Path) -> Path:
    path = folder / "fox.png"
    FIRST.save(path, "PNG")
    return path


@pytest.fixture(scope="module")
def here(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path) -> Kinema:
    folder = tmp_path_factory.mktemp("here")
    return Kinema(kinema_env(folder / "data", tiny_weights), [], folder)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory, server: ServerProcess) -> Kinema:
    folder = tmp_path_factory.mktemp("remote")
    env = kinema_env(folder / "unused", Path("/nonexistent"))  # nothing may load here
    return Kinema(env, ["--server", server.url, "--api-key", TEST_KEY], folder)


@pytest.fixture(scope="module", params=["here", "remote"])
def where(request: pytest.FixtureRequest) -> Kinema:
    kinema: Kinema = request.getfixturevalue(request.param)
    return kinema


@pytest.fixture(scope="module")
def from_image(where: Kinema) -> tuple[dict[str, Any], Path]:
    """A 2 s 128x64 clip whose first frame is fox.png, and its file."""
    image = make_fox_png(where.cwd)
    out = where.cwd / "out.mp4"
    summary = where.made(
        "generate",
        "a half white, half black card",
        "--model",
        "tiny-ltx2",
        "--image",
        str(image),
        "--seconds",
        "2",
        "--size",
        f"{WIDTH}x{HEIGHT}",
        "--no-audio",
        "-o",
        str(out),
    )
    return summary, out


def test_generate_from_an_image_file_makes_a_clip_of_its_size_and_length(
    from_image: tuple[dict[str, Any], Path],
) -> None:
    summary, out = from_image
    info = probe(out)
    assert (info.width, info.height, info.fps) == (WIDTH, HEIGHT, FPS)
    assert abs(info.duration - 2) < 0.05 and info.frame_count == 2 * FPS
    assert summary["path"] == str(out.resolve()) and summary["model"] == "tiny-ltx2"
    assert abs(summary["duration"] - 2) < 0.05 and not info.has_audio
    assert_first_frame_shows(out)


def test_extend_adds_seconds_after_the_clip_as_one_mp4(
    where: Kinema, from_image: tuple[dict[str, Any], Path]
) -> None:
    source, source_path = from_image
    summary = where.made("extend", source["id"], "--seconds", "2")
    out = where.cwd / f"{source['id']}-extended.mp4"  # the default -o
    assert summary["path"] == str(out.resolve()) and summary["id"] != source["id"]
    info = probe(out)
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert abs(info.duration - 4) < 0.1 and info.frame_count == 4 * FPS
    before, after = frames(source_path), frames(out)
    differences = np.abs(after[: len(before)].astype(float) - before.astype(float))
    assert differences.mean(axis=(1, 2, 3)).max() < MAX_FRAME_DIFFERENCE  # the source, kept


def test_remix_remakes_the_clip_at_its_size_and_length(
    where: Kinema, from_image: tuple[dict[str, Any], Path]
) -> None:
    source, _ = from_image
    out = where.cwd / "remix.mp4"
    summary = where.made("remix", source["id"], "--prompt", "a card in the rain", "-o", str(out))
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (WIDTH, HEIGHT, 2 * FPS)
    assert summary["id"] != source["id"] and summary["seed"] == source["seed"]


def test_an_image_without_a_model_uses_the_kling_image_to_video_id_on_a_server(
    remote: Kinema, server: ServerProcess
) -> None:
    """No --model against a server: the Kling default becomes its image-to-video id, whose body
    takes the image (and makes the image's 16:9 shape at the model's size)."""
    image = make_fox_png(remote.cwd)
    out = remote.cwd / "kling.mp4"
    summary = remote.made(
        "generate", "a card", "--image", str(image), "--no-audio", "--seed", "3", "-o", str(out)
    )
    assert summary["model"] == "tiny-ltx2"  # what the server serves for the Kling id
    info = probe(out)
    assert (info.width, info.height) == (96, 54) and info.frame_count == 5 * FPS
    assert_first_frame_shows(out)


def test_generate_with_a_lora_runs_it_and_the_job_records_it(
    tmp_path: Path, tiny_weights: Path, lora_dir: Path
) -> None:
    """--lora NAME:SCALE reaches the worker here: the job's params name the LoRA that ran."""
    kinema = Kinema(
        kinema_env(tmp_path / "data", tiny_weights, KINEMA_LORA_DIR=str(lora_dir)), [], tmp_path
    )
    summary = kinema.made(
        "generate",
        "a fox",
        "--model",
        "tiny-ltx2",
        "--seconds",
        "1",
        "--lora",
        "glow:0.5",
        "-o",
        str(tmp_path / "glow.mp4"),
    )
    shown = kinema.run("jobs", "show", summary["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["params"]["loras"] == [{"name": "glow", "scale": 0.5}]
    table = kinema.run("jobs", "show", summary["id"])
    assert "glow at 0.5" in table.stdout
