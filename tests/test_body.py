"""BodyReader against a scripted ASGI receive: what a stopped body still yields."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tusd_py import body
from tusd_py.body import BodyReader


class Inbox:
    """An ASGI receive fed by the test; it waits, like a server, when nothing is queued."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def chunk(self, data: bytes, more: bool = True) -> None:
        self.queue.put_nowait({"type": "http.request", "body": data, "more_body": more})

    def disconnect(self) -> None:
        self.queue.put_nowait({"type": "http.disconnect"})

    async def receive(self) -> dict[str, Any]:
        return await self.queue.get()


async def read_stopped_after_first(inbox: Inbox, reason: str = "released") -> tuple[list[bytes], BodyReader]:
    """Take the first buffer, stop the reader as a newer request would, read the rest."""
    reader = BodyReader(inbox.receive, read_timeout=30)
    got: list[bytes] = []
    async for chunk in reader:
        got.append(bytes(chunk))
        if len(got) == 1:
            reader.stop(reason)
    return got, reader


def test_a_stopped_body_yields_what_had_arrived_until_the_disconnect() -> None:
    async def main() -> tuple[list[bytes], BodyReader]:
        inbox = Inbox()
        for part in (b"a", b"b", b"c"):
            inbox.chunk(part)
        inbox.disconnect()
        return await read_stopped_after_first(inbox)

    got, reader = asyncio.run(main())

    assert got == [b"a", b"b", b"c"]
    assert reader.interrupted == "released"
    assert reader.received == 3
    assert not reader.complete


def test_a_stopped_body_ends_when_nothing_more_arrives() -> None:
    async def main() -> tuple[list[bytes], float]:
        inbox = Inbox()
        inbox.chunk(b"a")
        inbox.chunk(b"b")
        started = time.monotonic()
        got, _ = await read_stopped_after_first(inbox)
        return got, time.monotonic() - started

    got, elapsed = asyncio.run(main())

    assert got == [b"a", b"b"]
    assert elapsed < body.DRAIN_PAUSE + 2


def test_draining_stops_at_its_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body, "DRAIN_BYTES", 10)

    async def main() -> list[bytes]:
        inbox = Inbox()
        for _ in range(50):
            inbox.chunk(b"x" * 4)
        got, _ = await read_stopped_after_first(inbox)
        return got

    got = asyncio.run(main())

    # The first buffer, then whole buffers until 10 drained bytes are reached.
    assert len(got) == 1 + 3


def test_draining_keeps_the_declared_length(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[list[bytes], BodyReader]:
        inbox = Inbox()
        reader = BodyReader(inbox.receive, read_timeout=30, limit=6)
        for _ in range(3):
            inbox.chunk(b"yyyy")
        got: list[bytes] = []
        async for chunk in reader:
            got.append(bytes(chunk))
            reader.stop("released")
        return got, reader

    got, reader = asyncio.run(main())

    assert b"".join(got) == b"yyyyyy"
    assert reader.interrupted == "overflow"


def test_a_timed_out_body_is_not_drained() -> None:
    async def main() -> tuple[list[bytes], BodyReader]:
        inbox = Inbox()
        inbox.chunk(b"a")
        reader = BodyReader(inbox.receive, read_timeout=0.2)
        got = [bytes(chunk) async for chunk in reader]
        inbox.chunk(b"late")
        return got, reader

    got, reader = asyncio.run(main())

    assert got == [b"a"]
    assert reader.interrupted == "timeout"


@pytest.mark.parametrize("reason", ["stopped", "shutdown"])
def test_a_body_stopped_by_a_hook_or_the_shutdown_keeps_only_what_the_server_holds(reason: str) -> None:
    async def main() -> tuple[list[bytes], BodyReader]:
        inbox = Inbox()
        for part in (b"a", b"b"):
            inbox.chunk(part)

        async def late() -> None:
            await asyncio.sleep(0.05)
            inbox.chunk(b"late")

        sender = asyncio.create_task(late())
        got, reader = await read_stopped_after_first(inbox, reason)
        await sender
        return got, reader

    got, reader = asyncio.run(main())

    # "b" was already held; "late" arrives after the stop and is not waited for.
    assert got == [b"a", b"b"]
    assert reader.interrupted == reason


def test_a_released_body_waits_a_moment_for_bytes_still_arriving() -> None:
    async def main() -> list[bytes]:
        inbox = Inbox()
        inbox.chunk(b"a")

        async def late() -> None:
            await asyncio.sleep(body.DRAIN_PAUSE / 4)
            inbox.chunk(b"late")
            inbox.disconnect()

        sender = asyncio.create_task(late())
        got, _ = await read_stopped_after_first(inbox)
        await sender
        return got

    assert asyncio.run(main()) == [b"a", b"late"]
