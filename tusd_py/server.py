"""uvicorn's httptools protocol, changed so that request bodies reach the app as received.

Two changes, both for an upload server:

- Body buffers are handed over one by one, exactly as the parser produced them, instead
  of being appended to one growing bytearray and copied out again on every receive(): no
  Python-level copy of an uploaded byte happens before the store writes it.
- When a client disconnects, uvicorn answers the app's next receive() with
  `http.disconnect` and throws away body bytes it had read but not handed over. Here the
  app gets them first (with `more_body`), then the disconnect.

Reading pauses while more than HIGH_WATER bytes wait for the app, as uvicorn does with its
own (smaller) limit, so memory per connection stays bounded. Pass it to uvicorn as
`http=TusHttpToolsProtocol` (or "tusd_py.server:TusHttpToolsProtocol") when serving the
tus app yourself.

If the app has a `server_events` attribute (`tusd_py.operations.Operations` does), it
hears of each connection opened and closed, and of the server's shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Protocol, runtime_checkable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .exchange import ARRIVED_AT

HIGH_WATER = 256 * 1024


class _BufferedCycle(RequestResponseCycle):
    # Set by TusHttpToolsProtocol right after the cycle is made (it is not constructed here).
    chunks: deque[bytes]
    buffered: int
    body_done: bool

    async def receive(self) -> Any:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.chunks and not self.disconnected and not self.response_complete and not self.body_done:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.chunks and not self.response_complete:
            body = self.chunks.popleft()
            self.buffered -= len(body)
            if self.buffered < HIGH_WATER // 2:
                self.flow.resume_reading()
            more = bool(self.chunks) or self.more_body or self.disconnected
            self.body_done = not more
            return {"type": "http.request", "body": body, "more_body": more}
        if self.disconnected or self.response_complete or self.body_done:
            if self.body_done and not (self.disconnected or self.response_complete):
                # The body is over: like uvicorn, wait for the disconnect or the response.
                self.message_event.clear()
                await self.message_event.wait()
            return {"type": "http.disconnect"}
        self.body_done = not self.more_body
        return {"type": "http.request", "body": b"", "more_body": self.more_body}


@runtime_checkable
class ServerEvents(Protocol):
    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def shutting_down(self) -> None: ...


class TusHttpToolsProtocol(HttpToolsProtocol):
    _events: ServerEvents | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        events = getattr(self.app, "server_events", None)
        if isinstance(events, ServerEvents):
            self._events = events
            events.connection_opened()

    def connection_lost(self, exc: Exception | None) -> None:
        events, self._events = self._events, None
        if events is not None:
            events.connection_closed()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # uvicorn calls this on every open connection once it stops accepting new ones.
        if self._events is not None:
            self._events.shutting_down()
        super().shutdown()

    def on_headers_complete(self) -> None:
        # Stamped as the headers are parsed, not when the app gets round to the request: a
        # request that waited behind others (a busy loop, a pipelined connection) must not
        # pass for newer than requests that arrived after it (see Locker.hold).
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[ARRIVED_AT] = time.time()
        super().on_headers_complete()
        # The cycle's task is created but has not run yet, so the swap takes effect from the
        # app's first receive(). Same fields, plus three of ours.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _BufferedCycle
            cycle: Any = self.cycle
            cycle.chunks = deque()
            cycle.buffered = 0
            cycle.body_done = False

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not isinstance(cycle, _BufferedCycle):
            super().on_body(body)
            return
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        cycle.chunks.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()
