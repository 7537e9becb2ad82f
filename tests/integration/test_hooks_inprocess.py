"""In-process hooks: async callables given to create_app, served by a real uvicorn."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import httpx
from conftest import serve_app
from hooks_receiver import patch_slowly, uploads_in

from tusd_py.app import create_app
from tusd_py.hooks import FileInfoChanges, HookEvent, HookResponse, Hooks, HookType, HTTPResponse

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


def wait_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_raising_pre_create_is_a_502_with_a_short_reason(tmp_path: Path) -> None:
    async def pre_create(event: HookEvent) -> HookResponse:
        raise RuntimeError("database password is hunter2")

    with serve_app(create_app(tmp_path, hooks={"pre-create": pre_create})) as origin:
        response = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "5"}, timeout=10)

    assert response.status_code == 502
    assert response.text.strip() == "pre-create hook failed"
    assert "hunter2" not in response.text
    assert "Location" not in response.headers
    assert uploads_in(tmp_path) == []


def test_typed_pre_create_sees_metadata_and_changes_the_upload(tmp_path: Path) -> None:
    seen: list[HookEvent] = []

    async def pre_create(event: HookEvent) -> HookResponse:
        seen.append(event)
        return HookResponse(
            change_file_info=FileInfoChanges(id="user-7_photo", metadata={"filename": "photo.jpg"}),
            http_response=HTTPResponse(header={"X-Asset": "7"}),
        )

    with serve_app(create_app(tmp_path, hooks={"pre-create": pre_create})) as origin:
        response = httpx.post(
            origin + "/",
            headers={**TUS, "Upload-Length": "5", "Upload-Metadata": "filename " + base64.b64encode(b"x").decode()},
            timeout=10,
        )

    assert response.status_code == 201
    assert response.headers["Location"] == origin + "/user-7_photo"
    assert response.headers["X-Asset"] == "7"
    (event,) = seen
    assert event.type is HookType.PRE_CREATE
    assert event.upload.metadata == {"filename": "x"}
    assert event.upload.size == 5
    assert event.request.method == "POST"
    assert (tmp_path / "user-7_photo").exists()


def test_slow_in_process_pre_create_is_a_504(tmp_path: Path) -> None:
    async def pre_create(event: HookEvent) -> HookResponse:
        await asyncio.sleep(5)
        return HookResponse()

    hooks = Hooks.from_callables({"pre-create": pre_create}, timeout=0.3)
    with serve_app(create_app(tmp_path, hooks=hooks)) as origin:
        started = time.monotonic()
        response = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "5"}, timeout=10)
        elapsed = time.monotonic() - started

    assert response.status_code == 504
    assert response.text.strip() == "pre-create hook did not answer in time"
    assert elapsed < 3
    assert uploads_in(tmp_path) == []


def test_raising_post_finish_never_affects_the_client_and_is_retried(tmp_path: Path) -> None:
    attempts: list[str] = []

    async def post_finish(event: HookEvent) -> None:
        attempts.append(event.id)
        if len(attempts) == 1:
            raise ConnectionError("search index is down")

    with serve_app(create_app(tmp_path, hooks={"post-finish": post_finish})) as origin:
        created = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "3"}, timeout=10)
        patched = httpx.patch(
            created.headers["Location"], headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"abc", timeout=10
        )
        assert created.status_code == 201
        assert patched.status_code == 204
        assert patched.headers["Upload-Offset"] == "3"
        # The outbox's first retry comes after its default 1 s backoff.
        wait_until(lambda: len(attempts) >= 2, timeout=8)

    assert len(set(attempts)) == 1
    assert (tmp_path / ".hooks" / "outbox.sqlite3").exists()


def test_post_receive_stop_upload_from_a_callable(tmp_path: Path) -> None:
    async def post_receive(event: HookEvent) -> HookResponse:
        if event.upload.offset >= 3:
            return HookResponse(stop_upload=True, http_response=HTTPResponse(status_code=403, body="over quota"))
        return HookResponse()

    hooks = Hooks.from_callables({"post-receive": post_receive}, progress_interval=0.1)
    with serve_app(create_app(tmp_path, hooks=hooks)) as origin:
        url = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "600000"}, timeout=10).headers["Location"]
        result = patch_slowly(url, chunks=200, size=3000, pause=0.02)

    assert result.status == 403
    assert result.body.strip() == "over quota"
    assert result.chunks_sent < 200
    assert 3 <= (tmp_path / url.rsplit("/", 1)[-1]).stat().st_size < 600000
