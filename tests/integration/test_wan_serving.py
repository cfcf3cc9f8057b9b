"""A real `kinema serve --model tiny-wan-2.2,tiny-ltx2,tiny-kandinsky-6,tiny-ltx-2.5`: four models
side by side, each job made by a worker of its own model; the contracts reach a model without
sound, and a request for sound is refused instead of answered with a silent clip."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from kinema import Client
from kinema.cli import app
from kinema.media import probe
from tests.conftest import TEST_KEY, ServerProcess, launch_server
from tests.pictures import half_white

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
V2 = "/v2/video/generations"
SERVED = ("tiny-wan-2.2", "tiny-ltx2", "tiny-kandinsky-6", "tiny-ltx-2.5")


@pytest.fixture(scope="module")
def wan_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path
) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("wan") / "data"
    running = launch_server(data_dir, tiny_weights, KINEMA_MODEL=",".join(SERVED))
    yield running
    running.stop()


def png_data_uri() -> str:
    buffer = io.BytesIO()
    half_white(96, 54).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_kling_client_gets_a_clip_without_an_audio_track(
    wan_server: ServerProcess, tmp_path: Path
) -> None:
    with Client(wan_server.url, TEST_KEY) as client:
        done = client.wait(client.create("a fox", duration=5).id, poll_interval=0.05, timeout=120)
        assert done.status == "completed", (done.error, wan_server.output())
        info = probe(client.download(done, tmp_path / "fox.mp4"))
    assert (info.width, info.height, info.duration, info.has_audio) == (96, 54, 5.0, False)
    assert done.meta["model"] == "tiny-wan-2.2" and done.video and done.video.has_audio is False


def test_asking_for_sound_is_a_400_naming_generate_audio(wan_server: ServerProcess) -> None:
    body = {
        "model": "klingai/video-v2-6-pro-text-to-video",
        "prompt": "a fox",
        "generate_audio": True,
    }
    response = httpx.post(wan_server.url + V2, json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "generate_audio", "message": "tiny-wan-2.2 makes video without sound; send false"}
    ]
    video = httpx.post(
        wan_server.url + "/v1/videos",
        json={"prompt": "x", "size": "96x54", "generate_audio": True},
        headers=AUTH,
    )
    assert video.status_code == 400 and video.json()["error"]["param"] == "generate_audio"


def test_image_to_video_reaches_the_model_on_both_contracts(wan_server: ServerProcess) -> None:
    body = {
        "model": "klingai/video-v2-6-pro-image-to-video",
        "prompt": "a fox",
        "image_url": png_data_uri(),
    }
    created = httpx.post(wan_server.url + V2, json=body, headers=AUTH)
    assert created.status_code == 200, created.text
    with Client(wan_server.url, TEST_KEY) as client:
        done = client.wait(created.json()["id"], poll_interval=0.05, timeout=120)
    assert done.status == "completed", (done.error, wan_server.output())
    video = httpx.get(f"{wan_server.url}/v1/videos/{done.id}", headers=AUTH).json()
    assert [image["frame"] for image in video["input_images"]] == [0]
    assert (video["generate_audio"], video["has_audio"]) == (False, False)
    models = httpx.get(wan_server.url + "/v1/models", headers=AUTH).json()["data"]
    assert models[0]["id"] == "tiny-wan-2.2"


def test_each_model_is_made_by_its_own_workers_and_shown_with_them(
    wan_server: ServerProcess, tmp_path: Path
) -> None:
    with Client(wan_server.url, TEST_KEY) as client:
        jobs = {model: client.create("a bell", model=model, duration=1) for model in SERVED}
        done = {
            model: client.wait(job.id, poll_interval=0.05, timeout=120)
            for model, job in jobs.items()
        }
        sound = {
            model: probe(client.download(job, tmp_path / f"{model}.mp4")).has_audio
            for model, job in done.items()
        }
    assert sound == {
        "tiny-wan-2.2": False,
        "tiny-ltx2": True,
        "tiny-kandinsky-6": True,
        "tiny-ltx-2.5": True,
    }
    assert {model: job.meta["model"] for model, job in done.items()} == {m: m for m in SERVED}
    ready = httpx.get(wan_server.url + "/readyz").json()["checks"]
    assert [ready[f"workers:{model}"] for model in SERVED] == ["ok"] * len(SERVED)
    models = httpx.get(wan_server.url + "/v1/models").json()["data"]
    assert {m["id"]: m["live_workers"] for m in models if "live_workers" in m} == dict.fromkeys(
        SERVED, 1
    )
    metrics = httpx.get(wan_server.url + "/metrics").text
    assert 'kinema_live_workers{model="tiny-wan-2.2"} 1.0' in metrics
    listed = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["models", "--server", wan_server.url])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    header = next(line for line in lines if "┃ id" in line).split("┃")
    rows = [line.split("│") for line in lines if "│" in line]
    column = [cell.strip() for cell in header].index("live workers")
    live = {row[1].strip(): row[column].strip() for row in rows if row[1].strip() in SERVED}
    assert live == dict.fromkeys(SERVED, "1")


def test_what_wan_cannot_take_is_a_400_naming_the_field(wan_server: ServerProcess) -> None:
    """A last frame, or a clip to remix: Wan takes a first frame only, so the request is refused
    in the contract's envelope instead of queued as a job that fails on the worker."""
    body = {
        "model": "klingai/video-v2-6-pro-image-to-video",
        "prompt": "a fox",
        "image_url": png_data_uri(),
        "tail_image_url": png_data_uri(),
    }
    response = httpx.post(wan_server.url + V2, json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "tail_image_url",
            "message": "tiny-wan-2.2 takes a first frame only, not other frames",
        }
    ]
    made = httpx.post(
        wan_server.url + "/v1/videos", json={"prompt": "a fox", "size": "96x54"}, headers=AUTH
    ).json()
    with Client(wan_server.url, TEST_KEY) as client:
        assert client.wait(made["id"], poll_interval=0.05, timeout=120).status == "completed"
    remix = httpx.post(
        f"{wan_server.url}/v1/videos/{made['id']}/remix", json={"prompt": "a cat"}, headers=AUTH
    )
    extension = httpx.post(
        f"{wan_server.url}/v1/videos/extensions",
        json={"prompt": "a cat", "seconds": "2", "video": {"id": made["id"]}},
        headers=AUTH,
    )
    for refused in (remix, extension):
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == "video"
        assert (
            "first frame only, not a clip to remix or extend" in refused.json()["error"]["message"]
        )
