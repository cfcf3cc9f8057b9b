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
from openai import NOT_GIVEN, OpenAI

POLL_SECONDS = 0.2
DEADLINE_SECONDS = 300
OPENAI_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
OPENAI_SECONDS = ("4", "8", "12")
SMALL = "96x54"  # the tiny model's 16:9 size: cheap on a CPU

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
        size=SMALL,  # type: ignore[arg-type]
        extra_body={"seed": 7, "generate_audio": True, "negative_prompt": "blur"},
    )
    created = raw.parse()
    done, statuses = wait_for(client, created.id)

    mp4 = out_dir / "fox.mp4"
    client.videos.download_content(created.id).write_to_file(mp4)
    thumbnail = client.videos.download_content(created.id, variant="thumbnail").content

    newer = [client.videos.create(prompt=f"queued clip {n}", size=SMALL).id for n in (1, 2)]
    first_page = client.videos.list(limit=2)
    second_page = client.videos.list(limit=2, after=first_page.data[-1].id)
    oldest_first = client.videos.list(limit=2, order="asc")
    every_id = [video.id for video in client.videos.list(limit=1)]  # the SDK follows `after`

    deleted = [client.videos.delete(video_id) for video_id in newer]
    after_delete = [video.id for video in client.videos.list(limit=10)]
    deleted_retrieve = api_error(lambda: client.videos.retrieve(newer[0]))
    documented = documented_values(client)
    return {
        **documented,
        **image_remix_and_extension(client, created.id, out_dir),
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
        "after_delete": after_delete,
        "deleted_retrieve": deleted_retrieve,
        "size_error": api_error(
            lambda: client.videos.create(prompt="x", size="wide")  # type: ignore[arg-type]
        ),
        "seconds_error": api_error(
            lambda: client.videos.create(prompt="x", seconds="four")  # type: ignore[arg-type]
        ),
        "character_error": api_error(
            lambda: client.videos.create_character(name="fox", video=b"x")  # type: ignore[arg-type]
        ),
        "auth_error": api_error(
            lambda: OpenAI(base_url=f"{url}/v1", api_key="kin_wrong", max_retries=0).videos.list()
        ),
    }


def documented_values(client: OpenAI) -> dict[str, Any]:
    """Each documented size and length, and OpenAI's defaults, as created (then deleted)."""
    created = {"defaults": client.videos.create(prompt="defaults")}
    for size in OPENAI_SIZES:
        created[size] = client.videos.create(prompt="a size", size=size)  # type: ignore[arg-type]
    for seconds in OPENAI_SECONDS:
        created[f"{seconds}s"] = client.videos.create(
            prompt="a length",
            seconds=seconds,  # type: ignore[arg-type]
            size=SMALL,  # type: ignore[arg-type]
        )
    for video in created.values():
        client.videos.delete(video.id)
    twelve = client.videos.create_and_poll(
        prompt="twelve seconds",
        seconds="12",
        size=SMALL,  # type: ignore[arg-type]
        poll_interval_ms=200,
    )
    return {
        "documented": {name: [v.seconds, v.size] for name, v in created.items()},
        "twelve": twelve.model_dump(),
    }


def image_remix_and_extension(client: OpenAI, fox_id: str, out_dir: Path) -> dict[str, Any]:
    """An image-to-video clip at an OpenAI size, a remix, an extension and the spritesheet."""
    with (out_dir / "first.png").open("rb") as image:
        from_image = client.videos.create_and_poll(
            prompt="the picture comes alive",
            seconds="4",
            size="720x1280",
            input_reference=image,
            poll_interval_ms=200,
        )
    client.videos.download_content(from_image.id).write_to_file(out_dir / "from_image.mp4")
    remix = client.videos.remix(fox_id, prompt="the same fox, at night")
    remixed, _ = wait_for(client, remix.id)
    # openai 3.57 insists `video` be a file (its own check refuses the `{"id": …}` its types
    # allow), so the reference goes in the body it sends as the form field `video[id]`.
    by_id = {"video": {"id": fox_id}}
    extension = client.videos.extend(
        prompt="the fox runs on", seconds="4", video=NOT_GIVEN, extra_body=by_id
    )
    extended, _ = wait_for(client, extension.id)
    client.videos.download_content(extended.id).write_to_file(out_dir / "extended.mp4")
    client.videos.download_content(fox_id, variant="video").write_to_file(out_dir / "fox.mp4")
    sprites = client.videos.download_content(fox_id, variant="spritesheet").content
    edit = client.videos.edit(prompt="in watercolour", video=NOT_GIVEN, extra_body=by_id)
    upload = api_error(lambda: client.videos.edit(prompt="x", video=b"not a kinema video"))
    client.videos.delete(edit.id)
    enhanced = client.videos.create_and_poll(
        prompt="a fox", size=SMALL, extra_body={"enhance_prompt": True}, poll_interval_ms=200
    )
    return {
        "enhanced": enhanced.model_dump(),
        "from_image": from_image.model_dump(),
        "from_image_mp4": str(out_dir / "from_image.mp4"),
        "remixed": remixed.model_dump(),
        "extended": extended.model_dump(),
        "extended_mp4": str(out_dir / "extended.mp4"),
        "sprites_head": sprites[:3].hex(),
        "edit": edit.model_dump(),
        "upload_error": upload,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
