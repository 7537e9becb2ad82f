"""Reading a request body as a stream of buffers that can be ended from outside.

A PATCH body ends early, keeping what arrived, when the client disconnects, when it is
silent for the read timeout, when another request asks for the upload's lock, or when a
hook stops the upload. Each receive is bounded by its own asyncio timeout, which `stop`
fires at once; cancelling only the receive (never the store's writes) is what keeps
received bytes safe.

A body released to a newer request for its upload still yields what already reached
this machine: the buffers the server holds and the bytes waiting in the socket, read
until the client disconnects, nothing arrives for DRAIN_PAUSE, or DRAIN_BYTES /
DRAIN_SECONDS are spent. A client that reconnects after a network failure ends its old
PATCH with its HEAD; without this, the bytes the kernel had already taken for that PATCH
(megabytes on a fast link) would be thrown away and sent again. A body stopped for any
other reason (a hook's StopUpload, the server shutting down) keeps only the buffers the
server already holds, without waiting for more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.types import Receive

from .protocol.checksum import Hasher
from .stores import Buffer

DRAIN_PAUSE = 0.1
DRAIN_SECONDS = 1.0
DRAIN_BYTES = 32 * 1024 * 1024
RELEASED = "released"


class BodyReader:
    """Yields the request body's buffers as received, without joining or copying them."""

    def __init__(
        self,
        receive: Receive,
        *,
        read_timeout: float,
        limit: int | None = None,
        hasher: Hasher | None = None,
    ) -> None:
        self._receive = receive
        self._limit = limit
        self._read_timeout = read_timeout
        self._hasher = hasher
        self._timeout: asyncio.Timeout | None = None
        self.received = 0
        self.complete = False
        # Why the body ended before the client finished it: "disconnect", "timeout", or
        # the reason given to stop().
        self.interrupted: str | None = None
        # Set by stop(): how long the drain that follows waits for each further buffer.
        self._drain_pause: float | None = None
        self._head: bytearray | None = None
        self._head_need = 0
        self._on_head: Callable[[bytes], Awaitable[None]] | None = None
        self._on_progress: Callable[[int], None] | None = None
        self._progress_interval = 0.0
        self._next_progress = 0.0

    def configure(self, *, limit: int | None, hasher: Hasher | None) -> None:
        """Set what is known only once the upload's lock is held."""
        self._limit = limit
        self._hasher = hasher

    def on_progress(self, callback: Callable[[int], None], interval: float) -> None:
        """Call `callback(received)` at most once per `interval` seconds while bytes flow."""
        self._on_progress = callback
        self._progress_interval = interval
        self._next_progress = asyncio.get_running_loop().time() + interval

    def watch_head(self, prefix: bytes, need: int, callback: Callable[[bytes], Awaitable[None]]) -> None:
        """Await `callback(head)` once `need` leading bytes (prefix included) are in."""
        self._head = bytearray(prefix)
        self._head_need = need
        self._on_head = callback

    def unseen_head(self) -> bytes | None:
        """The head gathered so far if the callback has not been called yet."""
        return None if self._head is None else bytes(self._head)

    def digest(self) -> bytes:
        assert self._hasher is not None
        return self._hasher.digest()

    def stop(self, reason: str) -> None:
        """End the body as soon as possible; the buffers already received are kept."""
        if self.interrupted is None:
            self.interrupted = reason
            self._drain_pause = DRAIN_PAUSE if reason == RELEASED else 0.0
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    def _take(self, body: bytes) -> Buffer:
        """Count, limit and hash a received buffer."""
        chunk: Buffer = body
        if self._limit is not None and self.received + len(chunk) > self._limit:
            # Nothing past the declared length is ever stored: keep the part that fits
            # and end the body; the handler answers 413.
            chunk = memoryview(chunk)[: self._limit - self.received]
            self.interrupted = "overflow"
        if chunk:
            self.received += len(chunk)
            if self._hasher is not None:
                self._hasher.update(chunk)
        return chunk

    async def _grow_head(self, chunk: Buffer) -> None:
        assert self._head is not None and self._on_head is not None
        # A copy of at most `need` bytes, once per upload: the buffers themselves stay as received.
        self._head += chunk[: self._head_need - len(self._head)]
        if len(self._head) >= self._head_need:
            head, self._head = bytes(self._head), None
            await self._on_head(head)

    async def _drain(self, pause: float) -> AsyncIterator[Buffer]:
        """After stop(): what already reached this machine (see the module's note)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        drained = 0
        while drained < DRAIN_BYTES and self.interrupted != "overflow":
            try:
                async with asyncio.timeout(min(pause, deadline - loop.time())):
                    message = await self._receive()
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            chunk = self._take(message.get("body", b""))
            if chunk:
                drained += len(chunk)
                yield chunk
                await self._passed(chunk)
            if not message.get("more_body", False):
                return

    async def _passed(self, chunk: Buffer) -> None:
        """What follows each buffer the store has taken: the head watch and progress."""
        if self._head is not None:
            await self._grow_head(chunk)
        if self._on_progress is not None:
            now = asyncio.get_running_loop().time()
            if now >= self._next_progress:
                self._next_progress = now + self._progress_interval
                self._on_progress(self.received)

    def __aiter__(self) -> AsyncIterator[Buffer]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Buffer]:
        while self.interrupted is None:
            try:
                async with asyncio.timeout(self._read_timeout or None) as self._timeout:
                    message = await self._receive()
            except TimeoutError:
                if self.interrupted is None:
                    self.interrupted = "timeout"
                    return
                # Stopped from outside while waiting for the next buffer.
                break
            finally:
                self._timeout = None
            if message["type"] == "http.disconnect":
                self.interrupted = "disconnect"
                return
            chunk = self._take(message.get("body", b""))
            if chunk:
                yield chunk
                await self._passed(chunk)
            if not message.get("more_body", False) and self.interrupted is None:
                self.complete = True
                return
        if self._drain_pause is not None:
            async for chunk in self._drain(self._drain_pause):
                yield chunk
