"""The real OpenAI Python SDK works against kinema's /v1/videos by changing only its base URL.

The SDK lives in .venv-openai (see requirements/openai-sdk.txt), so it runs in a subprocess:
tests/integration/openai_sdk_client.py drives a real `kinema serve` and prints what it saw.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinema.media import probe
from tests.conftest import TEST_KEY, ServerProcess
from tests.pictures import correlation, frames, half_white

ROOT = Path(__file__).resolve().parents[2]
OPENAI_PYTHON = ROOT / ".venv-openai" / "bin" / "python"
SDK_CLIENT = Path(__file__).with_name("openai_sdk_client.py")
TINY_16_9 = (96, 54)  # the tiny model's 16:9 frame size (the wire `size` is the requested one)

pytestmark = pytest.mark.slow


FIRST_FRAME = half_white(96, 54)


@pytest.fixture(scope="module")
def openai_python() -> Path:
    if not OPENAI_PYTHON.exists():
        pytest.fail(f"{OPENAI_PYTHON} is missing: run `bash scripts/setup.sh` to create it")
    return OPENAI_PYTHON


@pytest.fixture(scope="module")
def seen(
    openai_python: Path, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("openai-sdk")
    FIRST_FRAME.save(out / "first.png")
    result = subprocess.run(
        [str(openai_python), str(SDK_CLIENT), server.url, TEST_KEY, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{result.stderr}\n--- server log ---\n{server.output()}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_create_goes_as_multipart_and_answers_a_queued_video(seen: dict[str, Any]) -> None:
    assert seen["create_content_type"].startswith("multipart/form-data; boundary=")
    created = seen["created"]
    assert (created["object"], created["status"], created["model"]) == (
        "video",
        "queued",
        "tiny-ltx2",
    )
    assert (created["seconds"], created["size"], created["aspect_ratio"]) == (
        "5",
        "96x54",
        "16:9",
    )
    assert (created["seed"], created["generate_audio"], created["negative_prompt"]) == (
        7,
        True,
        "blur",
    )


def test_polling_with_retrieve_reaches_completed(seen: dict[str, Any]) -> None:
    order = {"queued": 0, "in_progress": 1, "completed": 2}
    statuses = seen["statuses"]
    assert statuses[-1] == "completed"
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    done = seen["done"]
    assert (done["progress"], done["error"]) == (100, None)
    assert done["completed_at"] >= done["created_at"]
    assert {"generate", "encode"} <= done["timings"].keys()
    assert done["has_audio"] is True and abs(done["duration"] - 5.0) < 0.05
    assert done["video_url"].startswith("http://127.0.0.1:") and done["thumbnail_url"]


def test_download_content_is_the_mp4_with_sound(seen: dict[str, Any]) -> None:
    mp4 = Path(seen["mp4"])
    info = probe(mp4)
    assert abs(info.duration - 5.0) <= 1 / info.fps + 1e-6
    assert info.has_audio and (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == TINY_16_9
    assert info.file_size == seen["done"]["file_size"]


def test_download_content_thumbnail_is_a_jpeg(seen: dict[str, Any]) -> None:
    assert seen["thumbnail_head"] == "ffd8ff" and seen["thumbnail_size"] > 100


def test_list_pages_with_after_in_both_orders(seen: dict[str, Any]) -> None:
    fox = seen["created"]["id"]
    first, second = seen["newer"]
    assert seen["first_page"] == {"ids": [second, first], "has_more": True}
    assert seen["second_page"] == {"ids": [fox], "has_more": False}
    assert seen["oldest_first"] == {"ids": [fox, first], "has_more": True}
    assert seen["every_id"] == [second, first, fox]


def test_delete_removes_the_videos(seen: dict[str, Any]) -> None:
    assert seen["deleted"] == [
        {"id": video_id, "object": "video.deleted", "deleted": True} for video_id in seen["newer"]
    ]
    assert seen["after_delete"] == [seen["created"]["id"]]
    assert seen["deleted_retrieve"]["class"] == "NotFoundError"
    assert seen["deleted_retrieve"]["code"] == "not_found"


def test_create_takes_every_documented_value_with_openai_defaults(seen: dict[str, Any]) -> None:
    documented = seen["documented"]
    assert documented["defaults"] == ["4", "720x1280"]
    for size in ("720x1280", "1280x720", "1024x1792", "1792x1024"):
        assert documented[size] == ["4", size]
    for seconds in ("4", "8", "12"):
        assert documented[f"{seconds}s"] == [seconds, "96x54"]
    twelve = seen["twelve"]
    assert twelve["status"] == "completed" and abs(twelve["duration"] - 12.0) < 0.05


def test_an_image_reference_makes_the_first_frame_at_an_openai_size(seen: dict[str, Any]) -> None:
    video = seen["from_image"]
    assert (video["status"], video["seconds"], video["size"]) == ("completed", "4", "720x1280")
    info = probe(Path(seen["from_image_mp4"]))
    assert (info.width, info.height) == (720, 1280)
    assert abs(info.duration - 4.0) <= 1 / info.fps + 1e-6
    first = frames(Path(seen["from_image_mp4"]))[0]
    # The image is cover-cropped to the clip's shape: its middle, still white on the left.
    picture, mirrored = half_white(720, 1280), half_white(720, 1280, mirrored=True)
    assert correlation(first, picture) > 0.5 > correlation(first, mirrored)


def test_remix_keeps_the_shape_and_names_its_source(seen: dict[str, Any]) -> None:
    remixed, fox = seen["remixed"], seen["done"]
    assert remixed["status"] == "completed"
    assert remixed["remixed_from_video_id"] == fox["id"]
    assert remixed["prompt"] == "the same fox, at night"
    assert (remixed["seconds"], remixed["size"], remixed["seed"]) == (
        fox["seconds"],
        fox["size"],
        fox["seed"],
    )


def test_extend_returns_one_longer_clip_that_starts_as_its_source(seen: dict[str, Any]) -> None:
    extended = seen["extended"]
    assert (extended["status"], extended["seconds"]) == ("completed", "9")
    info = probe(Path(seen["extended_mp4"]))
    assert abs(info.duration - 9.0) <= 2 / info.fps and info.has_audio
    source = frames(Path(seen["mp4"]))
    longer = frames(Path(seen["extended_mp4"]))
    assert np.abs(longer[: len(source)].astype(int) - source.astype(int)).mean() < 3.0


def test_enhance_prompt_shows_the_prompt_the_model_ran(seen: dict[str, Any]) -> None:
    enhanced = seen["enhanced"]
    assert (enhanced["status"], enhanced["prompt"], enhanced["enhance_prompt"]) == (
        "completed",
        "a fox",
        True,
    )
    assert enhanced["prompt_used"] and enhanced["prompt_used"] != "a fox"
    assert seen["done"]["prompt_used"] is None  # not asked for: the prompt ran as written


def test_spritesheet_and_edit(seen: dict[str, Any]) -> None:
    assert seen["sprites_head"] == "ffd8ff"
    assert seen["edit"]["remixed_from_video_id"] == seen["done"]["id"]
    upload = seen["upload_error"]
    assert (upload["status"], upload["param"]) == (400, "video")


@pytest.mark.parametrize("name", ["size_error", "seconds_error"])
def test_unsupported_values_are_bad_request_errors_naming_the_param(
    seen: dict[str, Any], name: str
) -> None:
    error = seen[name]
    param = name.removesuffix("_error")
    assert (error["class"], error["status"], error["param"]) == ("BadRequestError", 400, param)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_value")


def test_characters_are_a_clear_bad_request(seen: dict[str, Any]) -> None:
    error = seen["character_error"]
    assert (error["class"], error["status"]) == ("BadRequestError", 400)
    assert "characters are not supported" in error["body"]["message"]


def test_a_wrong_key_is_an_authentication_error(seen: dict[str, Any]) -> None:
    error = seen["auth_error"]
    assert (error["class"], error["status"], error["code"]) == (
        "AuthenticationError",
        401,
        "invalid_api_key",
    )
