"""Uploads survive dropped connections and a killed server, and resume where they stopped."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.conftest import RunningServer

ServerFactory = Callable[..., "RunningServer"]

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024


def create_upload(server: RunningServer, length: int) -> str:
    response = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    return response.headers["location"]


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def request_head(method: str, url: str, headers: dict[str, str]) -> bytes:
    parsed = httpx.URL(url)
    lines = [
        f"{method} {parsed.raw_path.decode()} HTTP/1.1",
        f"Host: {parsed.host}:{parsed.port}",
        "Tus-Resumable: 1.0.0",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_partial(url: str, method: str, headers: dict[str, str], body: bytes) -> socket.socket:
    """Open a connection and send a request's headers and `body`, which is less than declared."""
    parsed = httpx.URL(url)
    sock = socket.create_connection((parsed.host, parsed.port), timeout=10)
    sock.sendall(request_head(method, url, headers) + body)
    return sock


def patch_headers(offset: int, content_length: int) -> dict[str, str]:
    return {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": str(offset),
        "Content-Length": str(content_length),
    }


def settled_size(path: Path, timeout: float = 10.0, quiet: float = 0.3) -> int:
    """The file's size once it has stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else -1
        if size != last:
            last, since = size, time.monotonic()
        elif size > 0 and time.monotonic() - since >= quiet:
            return size
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not settle (last size {last})")


def head_offset(url: str) -> int:
    response = httpx.head(url, headers=TUS, timeout=10)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def finish(url: str, offset: int, payload: bytes) -> None:
    response = httpx.patch(
        url,
        content=payload[offset:],
        headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)},
        timeout=30,
    )
    assert response.status_code == 204, response.text
    assert int(response.headers["upload-offset"]) == len(payload)


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    return response.content


def test_dropped_patch_keeps_the_bytes_that_arrived(server: RunningServer) -> None:
    payload = random.Random(1).randbytes(4 * MiB)
    url = create_upload(server, len(payload))
    sent = len(payload) // 2

    send_partial(url, "PATCH", patch_headers(0, len(payload)), payload[:sent]).close()

    on_disk = settled_size(server.upload_dir / upload_id(url))
    offset = head_offset(url)
    assert offset == on_disk
    assert 0 < offset <= sent
    finish(url, offset, payload)
    assert download(url) == payload


def test_dropped_creation_with_upload_keeps_the_upload_and_its_bytes(server: RunningServer) -> None:
    payload = random.Random(2).randbytes(4 * MiB)
    sent = len(payload) // 2
    headers = {
        "Upload-Length": str(len(payload)),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(payload)),
    }

    send_partial(server.endpoint, "POST", headers, payload[:sent]).close()

    # The client never heard the Location; the only upload on disk is the one it made.
    deadline = time.monotonic() + 5
    while not (infos := list(server.upload_dir.glob("*.info"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(infos) == 1
    url = server.endpoint + infos[0].stem
    settled_size(server.upload_dir / infos[0].stem)
    offset = head_offset(url)
    assert 0 < offset <= sent
    finish(url, offset, payload)
    assert download(url) == payload


def test_server_killed_mid_upload_resumes_after_restart(server_factory: ServerFactory) -> None:
    server = server_factory()
    payload = random.Random(3).randbytes(8 * MiB)
    url = create_upload(server, len(payload))
    data_file = server.upload_dir / upload_id(url)
    sock = send_partial(url, "PATCH", patch_headers(0, len(payload)), payload[: 5 * MiB])
    try:
        deadline = time.monotonic() + 10
        while data_file.stat().st_size < 2 * MiB:
            assert time.monotonic() < deadline, "the server wrote nothing to disk"
            time.sleep(0.01)
        server.kill()
    finally:
        sock.close()
    on_disk = os.stat(data_file).st_size

    restarted = server_factory(upload_dir=server.upload_dir)
    url = restarted.endpoint + upload_id(url)

    offset = head_offset(url)
    assert offset == on_disk
    assert 0 < offset <= 5 * MiB
    finish(url, offset, payload)
    assert download(url) == payload


def test_dropped_small_patch_keeps_the_bytes_that_arrived(server: RunningServer) -> None:
    # Each body fits one socket read together with the headers, which is when the loss shows;
    # several tries make the outcome independent of scheduling luck.
    offsets = []
    for _ in range(8):
        url = create_upload(server, MiB)
        send_partial(url, "PATCH", patch_headers(0, MiB), b"s" * 1000).close()
        time.sleep(0.3)
        offsets.append(head_offset(url))
    assert offsets == [1000] * 8
