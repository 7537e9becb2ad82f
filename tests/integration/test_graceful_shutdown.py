"""SIGTERM mid-PATCH: the PATCH may finish within --shutdown-timeout; after it, it is ended
with its bytes kept, and the upload resumes on the next start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from conftest import free_port
from ops_helpers import LoggedServer, logged_server

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
DATA = os.urandom(300_000)


class SlowPatch:
    """A PATCH sent over a raw socket, a piece at a time, its response read as it comes."""

    def __init__(self, server: LoggedServer, url: str, offset: int, body: bytes) -> None:
        self.body = body
        self.sent = 0
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        path = url.split(str(server.port), 1)[1]
        head = (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, count: int) -> None:
        self.sock.sendall(self.body[self.sent : self.sent + count])
        self.sent += count

    def trickle(self, piece: int, every: float) -> None:
        """Send the rest in the background, `piece` bytes every `every` seconds."""

        def run() -> None:
            with contextlib.suppress(OSError):
                while self.sent < len(self.body) and not self._stop.is_set():
                    self.send(min(piece, len(self.body) - self.sent))
                    time.sleep(every)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def response(self) -> tuple[int, dict[str, str]]:
        raw = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in raw:
                block = self.sock.recv(4096)
                if not block:
                    break
                raw += block
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
        status_line, *header_lines = raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers


def create(server: LoggedServer) -> str:
    response = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": str(len(DATA))})
    assert response.status_code == 201
    return response.headers["Location"]


def let_arrive() -> None:
    """Give the server time to read what was sent; the store writes in batches, so the
    data file cannot tell."""
    time.sleep(0.5)


def test_patch_in_flight_finishes_within_the_timeout(tmp_path: Path) -> None:
    upload_dir, port = tmp_path / "data", free_port()
    with logged_server(upload_dir, tmp_path / "log", "--shutdown-timeout", "20s", port=port) as server:
        url = create(server)
        patch = SlowPatch(server, url, 0, DATA)
        patch.send(100_000)
        let_arrive()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # New connections are refused while the PATCH goes on.
        try:
            httpx.options(server.endpoint, timeout=2)
            raise AssertionError("the server still accepts connections")
        except httpx.TransportError:
            pass
        patch.trickle(50_000, 0.05)
        status, headers = patch.response()
        assert (status, headers["upload-offset"]) == (204, str(len(DATA)))
        server.process.wait(20)
    with logged_server(upload_dir, tmp_path / "log", port=port) as server:
        assert httpx.get(url).content == DATA


def test_patch_past_the_timeout_is_ended_with_its_bytes_kept(tmp_path: Path) -> None:
    upload_dir, port = tmp_path / "data", free_port()
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    hooks = ("--hooks-http", dead, "--hooks-enabled-events", "post-create", "--hooks-http-backoff", "60s")
    with logged_server(upload_dir, tmp_path / "log", "--shutdown-timeout", "1s", *hooks, port=port) as server:
        url = create(server)
        upload_id = url.rsplit("/", 1)[-1]
        patch = SlowPatch(server, url, 0, DATA)
        patch.send(64_000)
        let_arrive()
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # 1 KB every 20 ms: this body would need more than 10 s to arrive.
        patch.trickle(1000, 0.02)
        status, headers = patch.response()
        assert status == 503
        kept = int(headers["upload-offset"])
        assert 64_000 <= kept < len(DATA)
        server.process.wait(15)
        # Ended after the timeout, not cancelled at its end nor left running.
        assert 1.0 <= time.monotonic() - started < 6.0
    assert (upload_dir / upload_id).stat().st_size == kept
    # The post-create event the dead receiver never got is still on disk.
    with contextlib.closing(sqlite3.connect(upload_dir / ".hooks" / "outbox.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM hook_outbox").fetchone() == (1,)
    with logged_server(upload_dir, tmp_path / "log", *hooks, port=port) as server:
        head = httpx.head(url, headers=TUS)
        assert head.headers["Upload-Offset"] == str(kept)
        rest = httpx.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(kept)}, content=DATA[kept:])
        assert rest.status_code == 204
        assert httpx.get(url).content == DATA
