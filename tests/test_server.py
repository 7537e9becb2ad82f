"""The connection protocol: a request's arrival time is taken as its headers are parsed."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn
from conftest import free_port, wait_for_port
from starlette.types import Receive, Scope, Send

from tusd_py.exchange import ARRIVED_AT, Request
from tusd_py.server import TusHttpToolsProtocol

# The first request keeps its connection busy this long.
BUSY = 0.4


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    started = time.time()
    if scope["path"] == "/slow":
        await asyncio.sleep(BUSY)
    arrived = Request(scope, receive, {}, scope["method"]).arrived_at
    body = f"{arrived!r} {started!r}".encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def read_replies(sock: socket.socket, count: int) -> list[tuple[float, float]]:
    sock.settimeout(10)
    data = b""
    replies: list[tuple[float, float]] = []
    while len(replies) < count:
        data += sock.recv(65536)
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) < length:
                break
            arrived, started = rest[:length].split()
            replies.append((float(arrived), float(started)))
            data = rest[length:]
    return replies


def test_a_request_that_waits_behind_another_keeps_its_arrival_time() -> None:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=TusHttpToolsProtocol, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        with (
            socket.create_connection(("127.0.0.1", port)) as pipelined,
            socket.create_connection(("127.0.0.1", port)) as other,
        ):
            # Two pipelined requests: the server starts the second only after the first answered.
            request = "GET {} HTTP/1.1\r\nHost: x\r\n\r\n"
            pipelined.sendall((request.format("/slow") + request.format("/queued")).encode())
            time.sleep(BUSY / 2)
            other.sendall(request.format("/later").encode())
            (_, _), (queued_arrived, queued_started) = read_replies(pipelined, 2)
            [(later_arrived, _)] = read_replies(other, 1)
        # The queued request was started late, but it arrived before the later one: a lock
        # must treat the later one as the newer request.
        assert queued_started - queued_arrived >= BUSY / 2
        assert queued_arrived < later_arrived
    finally:
        server.should_exit = True
        thread.join(10)


def test_without_our_protocol_the_arrival_is_when_the_request_is_seen() -> None:
    before = time.time()
    request = Request({"type": "http", "headers": []}, _never, {}, "GET")
    assert before <= request.arrived_at <= time.time()
    stamped = Request({"type": "http", "headers": [], "extensions": {ARRIVED_AT: 12.5}}, _never, {}, "GET")
    assert stamped.arrived_at == 12.5


async def _never() -> dict[str, object]:
    raise AssertionError("not read")
