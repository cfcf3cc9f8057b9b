"""The official AI/ML API SDK works against kinema by changing only its base URL."""

from __future__ import annotations

import io

import av
import pytest
from aimlapi import AIMLAPI

from tests.conftest import TEST_KEY, ServerProcess


def test_generate_with_polling_returns_mp4_bytes(server: ServerProcess) -> None:
    client = AIMLAPI(base_url=f"{server.url}/v1", api_key=TEST_KEY)
    statuses: list[str] = []
    data = client.videos.generate_with_polling(
        model="klingai/video-v2-6-pro-text-to-video",
        prompt="a drummer on a rooftop at dusk",
        duration=5,
        seed=3,
        poll_interval=0.2,
        poll_timeout=300,
        return_bytes=True,
        status_callback=lambda payload: statuses.append(payload["status"]),
    )
    assert isinstance(data, bytes) and data[4:8] == b"ftyp"
    with av.open(io.BytesIO(data)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
    assert statuses[0] == "queued" and statuses[-1] == "completed"


def test_sdk_sees_validation_errors(server: ServerProcess) -> None:
    import aimlapi

    client = AIMLAPI(base_url=f"{server.url}/v1", api_key=TEST_KEY)
    with pytest.raises(aimlapi.BadRequestError) as raised:
        client.videos.generate_with_polling(
            model="klingai/video-v2-6-pro-text-to-video", prompt="x", duration=7
        )
    assert "duration" in str(raised.value)
