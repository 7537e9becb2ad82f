"""A real webhook receiver for the hook tests: a Starlette app that records every call.

Each test tells it how to answer through `Receiver.answers` (event type -> function of the
event body returning a status and a JSON value, or raw bytes). It verifies signatures
with the package's own helper when it knows a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from conftest import wait_for_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tusd_py.hooks import SIGNATURE_HEADER, verify

Answer = tuple[int, Any]
Answerer = Callable[[dict[str, Any]], Answer]


@dataclass(frozen=True)
class Call:
    """One POST the receiver got."""

    type: str
    body: dict[str, Any]
    headers: dict[str, str]
    signature_ok: bool | None

    @property
    def event_id(self) -> str:
        return str(self.body["ID"])

    @property
    def upload(self) -> dict[str, Any]:
        return dict(self.body["Event"]["Upload"])


@dataclass
class Receiver:
    secret: str | None = None
    answers: dict[str, Answerer] = field(default_factory=dict)
    # Seconds to wait before answering, per event type (to provoke timeouts).
    delays: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.answers.clear()
            self.delays.clear()
            self.calls.clear()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def of_type(self, hook_type: str, upload_id: str | None = None) -> list[Call]:
        return [
            c for c in self.snapshot() if c.type == hook_type and (upload_id is None or c.upload["ID"] == upload_id)
        ]

    def wait_for(self, predicate: Callable[[list[Call]], bool], timeout: float = 10.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        while True:
            calls = self.snapshot()
            if predicate(calls):
                return calls
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver never saw what was expected; it got {[c.type for c in calls]}")
            time.sleep(0.05)

    async def _endpoint(self, request: Request) -> Response:
        raw = await request.body()
        body = json.loads(raw)
        hook_type = str(body["Type"])
        signature_ok = None
        if self.secret is not None:
            signature_ok = verify(self.secret, raw, request.headers.get(SIGNATURE_HEADER))
        with self._lock:
            self.calls.append(Call(hook_type, body, dict(request.headers), signature_ok))
            delay = self.delays.get(hook_type, 0.0)
            answer = self.answers.get(hook_type)
        if delay:
            await asyncio.sleep(delay)
        if signature_ok is False:
            return Response("bad signature", status_code=401)
        status, payload = answer(body) if answer is not None else (200, {})
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return Response(content, status_code=status, media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self._endpoint, methods=["POST"])])


@contextlib.contextmanager
def serve_on(app: Starlette, port: int) -> Iterator[str]:
    """Like conftest's serve_app, but on a port chosen beforehand (the server knows it already)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def uploads_in(directory: Path) -> list[str]:
    """What the store holds: every entry of the upload dir except the hooks' own."""
    return sorted(p.name for p in directory.iterdir() if p.name != ".hooks") if directory.exists() else []


@dataclass
class SlowPatch:
    status: int
    headers: dict[str, str]
    body: str
    elapsed: float
    chunks_sent: int


def patch_slowly(url: str, chunks: int, size: int, pause: float) -> SlowPatch:
    """PATCH from offset 0, sending the body slowly while already listening for the answer.

    Common clients read the response only after the whole body is sent, which would hide
    whether the server answered early; a raw socket shows when the answer came.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {chunks * size}\r\n\r\n"
    )
    answered = threading.Event()
    sent = 0

    def send_body() -> None:
        nonlocal sent
        for _ in range(chunks):
            if answered.is_set():
                return
            try:
                sock.sendall(b"s" * size)
            except OSError:
                return
            sent += 1
            time.sleep(pause)

    with sock:
        sock.sendall(head.encode())
        sender = threading.Thread(target=send_body, daemon=True)
        started = time.monotonic()
        sender.start()
        response = http.client.HTTPResponse(sock)
        response.begin()
        elapsed = time.monotonic() - started
        body = response.read().decode()
        answered.set()
        sender.join(10)
    return SlowPatch(response.status, {k.lower(): v for k, v in response.getheaders()}, body, elapsed, sent)
