"""`tusd-py serve --locker redis://...`: instances that share their locks through Redis.

The two instances here share a local upload directory, so these tests need no S3; the
three-instance tests on Ceph's gateway are in tests/integration/test_scale_out.py.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from services.redis_server import RedisServer

if TYPE_CHECKING:
    from conftest import RunningServer

TUS = {"Tus-Resumable": "1.0.0"}
ServerFactory = Callable[..., "RunningServer"]


def on(server: RunningServer, url: str) -> str:
    """The same upload's URL on another instance."""
    return server.origin + httpx.URL(url).path


def start_patch(url: str, length: int, first: bytes) -> socket.socket:
    """A PATCH from offset 0 that declares `length` bytes, sends `first` and stalls."""
    parsed = httpx.URL(url)
    sock = socket.create_connection((parsed.host, parsed.port or 80))
    sock.sendall(
        (
            f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.host}\r\nTus-Resumable: 1.0.0\r\n"
            "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        + first
    )
    return sock


def read_status(sock: socket.socket, timeout: float) -> int:
    sock.settimeout(timeout)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection without an answer"
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_a_request_on_b_ends_the_stalled_patch_on_a(
    server_factory: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.start()
    flags = ("--locker", redis_server.url, "--lock-timeout", "5s")
    a = server_factory(*flags, upload_dir=tmp_path / "data")
    b = server_factory(*flags, upload_dir=tmp_path / "data")
    data = os.urandom(1024 * 1024)
    created = httpx.post(a.endpoint, headers={**TUS, "Upload-Length": str(len(data))})
    assert created.status_code == 201
    url = created.headers["location"]
    sent = 300_000
    stalled = start_patch(url, len(data), data[:sent])
    try:
        time.sleep(1.0)  # every sent byte is off the socket and stored
        started = time.monotonic()
        head = httpx.head(on(b, url), headers=TUS, timeout=10)
        # Well within the lock timeout: A was asked to let go, not waited out.
        assert time.monotonic() - started < 3
        assert head.status_code == 200
        assert int(head.headers["upload-offset"]) == sent
        read_status(stalled, 5)
    finally:
        stalled.close()
    rest = httpx.patch(
        on(b, url),
        content=data[sent:],
        headers={**TUS, "Upload-Offset": str(sent), "Content-Type": "application/offset+octet-stream"},
    )
    assert rest.status_code == 204
    assert httpx.get(url, timeout=10).content == data


def test_an_unreachable_redis_answers_503(server_factory: ServerFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    server = server_factory("--locker", dead)
    created = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": "10"})
    assert created.status_code == 201
    started = time.monotonic()
    head = httpx.head(created.headers["location"], headers=TUS, timeout=10)
    assert time.monotonic() - started < 2
    assert head.status_code == 503, head.status_code


def test_readyz_reports_an_unreachable_redis(server_factory: ServerFactory, redis_server: RedisServer) -> None:
    redis_server.start()
    server = server_factory("--locker", redis_server.url)
    assert httpx.get(server.origin + "/readyz", timeout=10).status_code == 200
    redis_server.stop()
    try:
        ready = httpx.get(server.origin + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert "locker" in ready.text
    finally:
        redis_server.start()
    # Back without restarting the instance.
    assert httpx.get(server.origin + "/readyz", timeout=10).status_code == 200
