"""The client's reading of answers: both error shapes, and a page of /v1/videos."""

from __future__ import annotations

import httpx
import pytest

from kinema.client import VideoPage, _checked
from kinema.errors import ClientError


def raised_by(response: httpx.Response) -> ClientError:
    with pytest.raises(ClientError) as caught:
        _checked(response)
    return caught.value


def test_the_hosted_apis_envelope_gives_its_message() -> None:
    body = {
        "requestId": "r",
        "statusCode": 400,
        "path": "/v2/video/generations",
        "message": "Body validation error: duration: must be 5 or 10",
        "errors": [{"field": "duration", "message": "must be 5 or 10"}],
    }
    error = raised_by(httpx.Response(400, json=body))
    assert error.status_code == 400 and error.body == body
    assert str(error) == "HTTP 400: Body validation error: duration: must be 5 or 10"


def test_openais_error_shape_gives_its_message_and_names_the_param() -> None:
    body = {
        "error": {
            "message": "'7' is not supported; use one of '5', '10'",
            "type": "invalid_request_error",
            "param": "seconds",
            "code": "invalid_value",
        }
    }
    error = raised_by(httpx.Response(400, json=body))
    assert error.message == "'7' is not supported; use one of '5', '10' (param: seconds)"
    assert error.body == body
    named = {"error": {"message": "Invalid 'limit': must be <= 100", "param": "limit"}}
    assert raised_by(httpx.Response(400, json=named)).message == "Invalid 'limit': must be <= 100"
    missing = {
        "error": {
            "message": "no video 'x'",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    assert str(raised_by(httpx.Response(404, json=missing))) == "HTTP 404: no video 'x'"


def test_bodies_that_are_not_json_fall_back_to_the_text() -> None:
    assert raised_by(httpx.Response(502, text="bad gateway")).message == "bad gateway"
    assert raised_by(httpx.Response(503)).message == "Service Unavailable"
    assert raised_by(httpx.Response(405, json={"detail": "Method Not Allowed"})).message == (
        "Method Not Allowed"
    )


def test_a_page_of_videos() -> None:
    page = VideoPage.from_json(
        {
            "object": "list",
            "data": [{"id": "b"}, {"id": "a"}],
            "first_id": "b",
            "last_id": "a",
            "has_more": True,
        }
    )
    assert page == VideoPage([{"id": "b"}, {"id": "a"}], True, "b", "a")
    assert VideoPage.from_json({"object": "list", "data": []}) == VideoPage([], False)
