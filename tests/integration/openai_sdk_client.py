"""Drive kinema's /v1/videos with the real OpenAI SDK; print one JSON object of what it saw.

Run by tests/integration/test_openai_sdk.py under .venv-openai (the real `openai` package cannot
share .venv with aimlapi-sdk-python, which vendors its own `openai`):

    .venv-openai/bin/python tests/integration/openai_sdk_client.py URL KEY OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI

POLL_SECONDS = 0.2
DEADLINE_SECONDS = 300

warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks the videos API deprecated


def wait_for(client: OpenAI, video_id: str) -> tuple[Any, list[str]]:
    """Poll with retrieve until the video is done; every status seen along the way."""
    statuses: list[str] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        video = client.videos.retrieve(video_id)
        statuses.append(video.status)
        if video.status in ("completed", "failed"):
            return video, statuses
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"video {video_id} not done after {DEADLINE_SECONDS} s: {statuses}")


def api_error(call: Any) -> dict[str, Any]:
    try:
        call()
    except openai.APIStatusError as exc:
        return {
            "class": type(exc).__name__,
            "status": exc.status_code,
            "param": exc.param,
            "code": exc.code,
            "type": exc.type,
            "body": exc.body,
        }
    return {"class": None}


def page_of(page: Any) -> dict[str, Any]:
    return {"ids": [video.id for video in page.data], "has_more": page.has_more}


def main(url: str, key: str, out_dir: Path) -> dict[str, Any]:
    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    raw = client.videos.with_raw_response.create(
        model="tiny-ltx2",
        prompt="a red fox trotting through fresh snow",
        seconds="5",  # type: ignore[arg-type]  # kinema's lengths, not Sora's
        size="1920x1080",  # type: ignore[arg-type]
        extra_body={"seed": 7, "generate_audio": True, "negative_prompt": "blur"},
    )
    created = raw.parse()
    done, statuses = wait_for(client, created.id)

    mp4 = out_dir / "fox.mp4"
    client.videos.download_content(created.id).write_to_file(mp4)
    thumbnail = client.videos.download_content(created.id, variant="thumbnail").content

    newer = [client.videos.create(prompt=f"queued clip {n}", size="1080x1080").id for n in (1, 2)]
    first_page = client.videos.list(limit=2)
    second_page = client.videos.list(limit=2, after=first_page.data[-1].id)
    oldest_first = client.videos.list(limit=2, order="asc")
    every_id = [video.id for video in client.videos.list(limit=1)]  # the SDK follows `after`

    deleted = [client.videos.delete(video_id) for video_id in newer]
    return {
        "create_content_type": raw.http_request.headers["content-type"],
        "created": created.model_dump(),
        "statuses": statuses,
        "done": done.model_dump(),
        "mp4": str(mp4),
        "thumbnail_head": thumbnail[:3].hex(),
        "thumbnail_size": len(thumbnail),
        "newer": newer,
        "first_page": page_of(first_page),
        "second_page": page_of(second_page),
        "oldest_first": page_of(oldest_first),
        "every_id": every_id,
        "deleted": [d.model_dump() for d in deleted],
        "after_delete": [video.id for video in client.videos.list(limit=10)],
        "deleted_retrieve": api_error(lambda: client.videos.retrieve(newer[0])),
        "size_error": api_error(
            lambda: client.videos.create(prompt="x", seconds="5", size="1280x720")  # type: ignore[arg-type]
        ),
        "seconds_error": api_error(lambda: client.videos.create(prompt="x", seconds="4")),
        "auth_error": api_error(
            lambda: OpenAI(base_url=f"{url}/v1", api_key="kin_wrong", max_retries=0).videos.list()
        ),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
