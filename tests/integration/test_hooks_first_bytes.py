"""first-bytes: a blocking hook that judges an upload by its leading bytes, within the PATCH."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import serve_app

from tusd_py import create_app
from tusd_py.hooks import HookEvent, HookResponse, HTTPResponse

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
REFUSAL = HTTPResponse(415, '{"error": "not media"}', {"Content-Type": "application/json"})


@pytest.fixture
def seen() -> list[HookEvent]:
    return []


@pytest.fixture
def origin(tmp_path: Path, seen: list[HookEvent]) -> Iterator[str]:
    async def first_bytes(event: HookEvent) -> HookResponse | None:
        seen.append(event)
        if event.head.startswith(b"OK"):
            return None
        return HookResponse(reject_upload=True, http_response=REFUSAL)

    with serve_app(create_app(tmp_path, hooks={"first-bytes": first_bytes})) as url:
        yield url


def create(origin: str, size: int) -> str:
    response = httpx.post(origin + "/", headers={**TUS, "Upload-Length": str(size)})
    assert response.status_code == 201
    return response.headers["location"]


def patch(url: str, offset: int, body: bytes) -> httpx.Response:
    return httpx.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset)}, content=body)


def test_accepted_head_lets_the_upload_finish(origin: str, seen: list[HookEvent]) -> None:
    body = b"OK" + bytes(20000)
    url = create(origin, len(body))
    assert patch(url, 0, body).status_code == 204
    assert httpx.get(url).content == body
    (event,) = seen
    assert event.head == body[:4096]


def test_refused_head_ends_the_patch_with_the_hooks_answer_and_removes_the_upload(origin: str) -> None:
    url = create(origin, 1 << 20)
    response = patch(url, 0, b"NO" + bytes((1 << 20) - 2))
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "not media"}
    assert httpx.head(url, headers=TUS).status_code == 404


def test_an_upload_shorter_than_the_head_is_judged_whole(origin: str, seen: list[HookEvent]) -> None:
    url = create(origin, 7)
    assert patch(url, 0, b"NOsmall").status_code == 415
    assert seen[-1].head == b"NOsmall"
    assert httpx.head(url, headers=TUS).status_code == 404


def test_a_head_split_across_patches_is_judged_once_with_the_stored_prefix(origin: str, seen: list[HookEvent]) -> None:
    body = b"OK" + bytes(9000)
    url = create(origin, len(body))
    assert patch(url, 0, body[:100]).status_code == 204
    assert seen == []
    assert patch(url, 100, body[100:]).status_code == 204
    (event,) = seen
    assert event.head == body[:4096]
    assert patch(url, len(body), b"").status_code == 204
    assert len(seen) == 1
