"""A real `kinema serve` subprocess: create → poll → download → the mp4 is what was asked for."""

from __future__ import annotations

import asyncio
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse

from kinema import AsyncClient, Client, ClientError, Generation
from tests.conftest import OTHER_KEY, TEST_KEY, ServerProcess

COMBINATIONS = [
    (aspect_ratio, duration, audio)
    for aspect_ratio in ("16:9", "9:16")
    for duration in (5, 10)
    for audio in (True, False)
]
TINY_SIZES = {"16:9": (96, 54), "9:16": (54, 96)}


Finished = dict[tuple[str, int, bool], tuple[Generation, Path, list[Generation]]]


def poll_all(client: Client, ids: list[str], timeout: float = 300) -> dict[str, list[Generation]]:
    """Poll every job round-robin until all are done; every state seen, per job."""
    seen: dict[str, list[Generation]] = {job_id: [] for job_id in ids}
    deadline = time.monotonic() + timeout
    while not all(states and states[-1].done for states in seen.values()):
        assert time.monotonic() < deadline, "generations did not finish in time"
        for job_id, states in seen.items():
            if not (states and states[-1].done):
                states.append(client.get(job_id))
        time.sleep(0.02)
    return seen


@pytest.fixture(scope="module")
def finished(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """Submit every combination at once, poll them all until done, download each clip."""
    out = tmp_path_factory.mktemp("clips")
    with Client(server.url, TEST_KEY) as client:
        created = {
            combo: client.create(
                f"a test clip {combo}",
                aspect_ratio=combo[0],
                duration=combo[1],
                generate_audio=combo[2],
                seed=11,
            )
            for combo in COMBINATIONS
        }
        seen = poll_all(client, [g.id for g in created.values()])
        results = {}
        for combo, generation in created.items():
            done = seen[generation.id][-1]
            assert done.status == "completed", (done, server.output())
            path = client.download(done, out / f"{generation.id}.mp4")
            results[combo] = (done, path, seen[generation.id])
    return results


@pytest.mark.parametrize(("aspect_ratio", "duration", "audio"), COMBINATIONS)
def test_clip_matches_the_request(
    finished: Finished,
    aspect_ratio: str,
    duration: int,
    audio: bool,
) -> None:
    generation, path, _ = finished[(aspect_ratio, duration, audio)]
    with av.open(str(path)) as container:
        video = list(container.streams.video)
        sound = list(container.streams.audio)
        assert len(video) == 1 and video[0].codec_context.name == "h264"
        assert video[0].codec_context.pix_fmt == "yuv420p"
        fps = float(video[0].average_rate or Fraction(24))
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / fps - duration) <= 1 / fps + 1e-6
    assert (video[0].codec_context.width, video[0].codec_context.height) == TINY_SIZES[aspect_ratio]
    if audio:
        assert len(sound) == 1 and sound[0].codec_context.name == "aac"
    else:
        assert sound == []
    assert generation.video is not None
    assert generation.video.has_audio is audio
    assert (generation.video.width, generation.video.height) == TINY_SIZES[aspect_ratio]
    assert abs(generation.video.duration - duration) <= 1 / fps + 1e-6
    assert generation.video.file_size == path.stat().st_size


def test_polling_shows_queue_position_then_progress(finished: Finished) -> None:
    generation, _, seen = finished[COMBINATIONS[-1]]
    statuses = [g.status for g in seen]
    order = {"queued": 0, "generating": 1, "completed": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    positions = [g.queue_position for g in seen if g.status == "queued"]
    assert positions[0] >= 1, "the last of 8 jobs submitted at once starts behind others"
    assert positions == sorted(positions, reverse=True) and positions[-1] >= 0
    progress = [g.progress for g in seen]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert generation.meta["seed"] == 11 and generation.meta["model"] == "tiny-ltx2"
    assert generation.meta["requested_model"] == "klingai/video-v2-6-pro-text-to-video"
    assert {"generate", "encode"} <= generation.meta["timings"].keys()


def test_video_url_is_absolute_and_needs_no_key(
    finished: Finished,
    server: ServerProcess,
) -> None:
    generation, path, _ = finished[("9:16", 5, True)]
    assert generation.video is not None
    assert generation.video.url.startswith(server.url + "/files/")
    response = httpx.get(generation.video.url)
    assert response.status_code == 200 and response.content == path.read_bytes()
    assert response.headers["content-type"] == "video/mp4"


def decoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        audio = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    return frames.astype(np.int16), audio


def test_same_seed_gives_the_same_clip_and_another_seed_does_not(
    finished: Finished,
    server: ServerProcess,
    tmp_path: Path,
) -> None:
    """Same seed: the same file, byte for byte, although the first clip was made while seven other
    jobs queued and encoded beside it; another seed: other pictures and other sound."""
    _, first, _ = finished[("16:9", 5, True)]
    with Client(server.url, TEST_KEY) as client:
        clips = []
        for seed in (11, 12):
            job = client.create("a test clip ('16:9', 5, True)", aspect_ratio="16:9", seed=seed)
            done = client.wait(job.id, poll_interval=0.05, timeout=120)
            clips.append(client.download(done, tmp_path / f"{seed}.mp4"))
    (frames, audio), (again_frames, again_audio), (other_frames, other_audio) = (
        decoded(path) for path in (first, *clips)
    )
    assert first.read_bytes() == clips[0].read_bytes()
    assert np.array_equal(frames, again_frames) and np.array_equal(audio, again_audio)
    assert np.abs(frames - other_frames).mean() > 10
    assert not np.array_equal(audio, other_audio)


def test_async_client_creates_waits_and_downloads(server: ServerProcess, tmp_path: Path) -> None:
    async def scenario() -> tuple[Generation, Path, list[float]]:
        progress: list[float] = []
        async with AsyncClient(server.url, TEST_KEY) as client:
            created = await client.create("waves at night", aspect_ratio="9:16", duration=5)
            done = await client.wait(
                created.id,
                poll_interval=0.05,
                timeout=120,
                on_progress=lambda g: progress.append(g.progress),
            )
            path = await client.download(done, tmp_path / "async.mp4")
            return done, path, progress

    done, path, progress = asyncio.run(scenario())
    assert done.status == "completed" and progress[-1] == 100.0
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.height == 96


def test_client_raises_the_servers_message(server: ServerProcess) -> None:
    with Client(server.url, TEST_KEY) as client, pytest.raises(ClientError) as raised:
        client.create("p", duration=7)
    assert raised.value.status_code == 400 and "duration" in raised.value.message
    with Client(server.url, "kin_wrong") as client, pytest.raises(ClientError) as raised:
        client.get("anything-at-all-0000000000")
    assert raised.value.status_code == 401


def read_events(url: str, generation_id: str, key: str = TEST_KEY) -> list[tuple[str, dict]]:
    params = {"generation_id": generation_id}
    headers = {"Authorization": f"Bearer {key}"}
    events = []
    with (
        httpx.Client(base_url=url, headers=headers, timeout=60) as http,
        connect_sse(http, "GET", "/v2/video/generations/events", params=params) as source,
    ):
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source.iter_sse():
            events.append((event.event, json.loads(event.data)))
    return events


def test_events_stream_progress_then_the_final_payload(server: ServerProcess) -> None:
    with Client(server.url, TEST_KEY) as client:
        created = client.create("a kite in the wind", duration=10, seed=4)
        events = read_events(server.url, created.id)
        polled = client.get(created.id)
    names = [name for name, _ in events]
    assert names[-1] == "completed" and set(names[:-1]) <= {"progress"}
    progress = [body["progress"] for _, body in events]
    assert progress == sorted(progress) and progress[-1] == 100.0
    final = events[-1][1]
    assert final["id"] == created.id and final["video"]["file_size"] == polled.video.file_size  # type: ignore[union-attr]
    assert final["meta"] == polled.meta


def test_events_for_an_unknown_or_foreign_job_are_404(server: ServerProcess) -> None:
    with Client(server.url, TEST_KEY) as client:
        mine = client.create("mine", seed=1).id
    headers = {"Authorization": f"Bearer {OTHER_KEY}"}
    for generation_id, auth in ((mine, headers), ("unknown-id-000000000000000", None)):
        response = httpx.get(
            f"{server.url}/v2/video/generations/events",
            params={"generation_id": generation_id},
            headers=auth or {"Authorization": f"Bearer {TEST_KEY}"},
        )
        assert response.status_code == 404 and response.json()["statusCode"] == 404


def test_client_wait_follows_the_stream_without_polling(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(server.url, TEST_KEY) as client:
        created = client.create("streamed", seed=2)

        def no_polling(generation_id: str) -> Generation:
            raise AssertionError("wait polled although the server streams events")

        monkeypatch.setattr(client, "get", no_polling)
        seen: list[Generation] = []
        done = client.wait(created.id, timeout=120, on_progress=seen.append)
    assert done.status == "completed" and seen[-1] is done


def test_client_wait_polls_where_there_is_no_stream(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinema.client

    monkeypatch.setattr(kinema.client, "EVENTS_PATH", "/v2/no-event-stream-here")
    with Client(server.url, TEST_KEY) as client:
        created = client.create("polled", seed=3)
        done = client.wait(created.id, poll_interval=0.05, timeout=120)
    assert done.status == "completed"


def test_async_client_wait_follows_the_stream(server: ServerProcess) -> None:
    async def scenario() -> Generation:
        async with AsyncClient(server.url, TEST_KEY) as client:
            created = await client.create("async stream", seed=5)

            async def no_polling(generation_id: str) -> Generation:
                raise AssertionError("polled")

            client.get = no_polling  # type: ignore[method-assign]
            return await client.wait(created.id, timeout=120)

    assert asyncio.run(scenario()).status == "completed"
