"""The steps tus and the draft share, seen through tus: a body that stores the upload's
last byte and then ends early still finishes the upload (hooks included), and a full
disk is told as such."""

from __future__ import annotations

import errno
import http.client
from collections.abc import AsyncIterable, Callable
from pathlib import Path

import httpx
from conftest import serve_app
from draft_client import wait_for

from tusd_py.app import create_app
from tusd_py.hooks import HookEvent
from tusd_py.locks import MemoryLocker
from tusd_py.stores import Buffer, FileStore

TUS = {"Tus-Resumable": "1.0.0"}


def chunked_patch(origin: str, path: str, offset: int, blocks: list[bytes]) -> tuple[int, str]:
    host = origin.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=10)
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    connection.request("PATCH", path, body=iter(blocks), headers=headers, encode_chunked=True)
    response = connection.getresponse()
    result = response.status, response.headers.get("Upload-Offset", "")
    connection.close()
    return result


def test_a_tus_body_that_goes_past_the_length_still_finishes_the_upload(tmp_path: Path) -> None:
    finished: list[HookEvent] = []

    async def post_finish(event: HookEvent) -> None:
        finished.append(event)

    with serve_app(create_app(tmp_path, hooks={"post-finish": post_finish})) as origin:
        url = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "6"}, timeout=10).headers["Location"]
        status, offset = chunked_patch(origin, "/" + url.rsplit("/", 1)[-1], 0, [b"abcd", b"efgh", b"ij"])
        wait_for(lambda: finished, timeout=5)

    assert (status, offset) == (413, "6")
    assert [(e.upload.offset, e.upload.size) for e in finished] == [(6, 6)]


class FullDisk(FileStore):
    """A disk that fills up during an append: the write fails with ENOSPC."""

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Buffer],
        accept: Callable[[], bool] | None = None,
    ) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_507_not_an_internal_error(tmp_path: Path) -> None:
    app = create_app(tmp_path, store=FullDisk(tmp_path), locker=MemoryLocker(timeout=5))
    with serve_app(app) as origin:
        url = httpx.post(origin + "/", headers={**TUS, "Upload-Length": "3"}, timeout=10).headers["Location"]
        response = httpx.patch(
            url,
            headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
            content=b"abc",
            timeout=10,
        )

    assert response.status_code == 507
    assert response.text.strip() == "server storage is full"
