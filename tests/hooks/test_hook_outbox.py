"""The SQLite outbox: durable, in order per upload, retried, and pruned once delivered."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from tusd_py.hooks import HookEvent, HookType, Outbox, RequestSnapshot, UploadSnapshot

Deliver = Callable[[HookEvent], Awaitable[None]]


def event(upload_id: str, hook_type: HookType, offset: int = 0) -> HookEvent:
    return HookEvent(
        hook_type, UploadSnapshot(id=upload_id, size=100, offset=offset, metadata={}), RequestSnapshot("PATCH", "/", "")
    )


def rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM hook_outbox").fetchone()
    return int(count)


async def deliver_all(outbox: Outbox, deliver: Deliver, timeout: float = 10.0) -> None:
    outbox.start(deliver, poll_interval=0.05)
    async with asyncio.timeout(timeout):
        while await outbox.pending():
            await asyncio.sleep(0.02)


def test_events_are_delivered_in_order_per_upload_then_pruned(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    plan = [
        event("a", HookType.POST_CREATE),
        event("b", HookType.POST_CREATE),
        event("a", HookType.POST_RECEIVE, 10),
        event("b", HookType.POST_RECEIVE, 5),
        event("a", HookType.POST_RECEIVE, 20),
        event("a", HookType.POST_FINISH, 100),
        event("b", HookType.POST_TERMINATE, 5),
    ]
    got: list[HookEvent] = []

    async def deliver(e: HookEvent) -> None:
        # Uneven delays would reorder the events of an upload if they were sent in parallel.
        await asyncio.sleep(0.03 if e.type is HookType.POST_CREATE else 0.0)
        got.append(e)

    async def run() -> None:
        outbox = Outbox(path, backoff=0.05)
        for e in plan:
            await outbox.enqueue(e)
        await deliver_all(outbox, deliver)
        await outbox.close()

    asyncio.run(run())

    for upload_id in ("a", "b"):
        assert [e.id for e in got if e.upload.id == upload_id] == [e.id for e in plan if e.upload.id == upload_id]
    assert sorted(e.id for e in got) == sorted(e.id for e in plan)
    assert rows(path) == 0


def test_a_failing_event_holds_back_its_upload_only_and_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first_a, second_a = event("a", HookType.POST_CREATE), event("a", HookType.POST_FINISH)
    only_b = event("b", HookType.POST_CREATE)
    attempts: list[str] = []
    delivered: list[str] = []

    async def deliver(e: HookEvent) -> None:
        attempts.append(e.id)
        if e.id == first_a.id and attempts.count(e.id) < 3:
            raise ConnectionError("receiver down")
        delivered.append(e.id)

    async def run() -> None:
        outbox = Outbox(path, backoff=0.05)
        for e in (first_a, second_a, only_b):
            await outbox.enqueue(e)
        await deliver_all(outbox, deliver)
        await outbox.close()

    asyncio.run(run())

    assert attempts.count(first_a.id) == 3
    assert delivered.index(first_a.id) < delivered.index(second_a.id)
    # b was not stuck behind a's failures.
    assert delivered.index(only_b.id) < delivered.index(first_a.id)
    assert attempts.index(second_a.id) > attempts.index(first_a.id)
    assert rows(path) == 0


def test_undelivered_events_survive_a_new_outbox_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    plan = [event("a", HookType.POST_CREATE), event("a", HookType.POST_FINISH)]
    got: list[HookEvent] = []

    async def write_only() -> None:
        outbox = Outbox(path)
        for e in plan:
            await outbox.enqueue(e)
        assert await outbox.pending() == 2
        await outbox.close()

    async def deliver(e: HookEvent) -> None:
        got.append(e)

    async def read_again() -> None:
        outbox = Outbox(path)
        await deliver_all(outbox, deliver)
        await outbox.close()

    asyncio.run(write_only())
    asyncio.run(read_again())

    assert got == plan


def test_same_event_enqueued_twice_is_kept_once(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    once = event("a", HookType.POST_CREATE)

    async def run() -> int:
        outbox = Outbox(path)
        await outbox.enqueue(once)
        await outbox.enqueue(once)
        count = await outbox.pending()
        await outbox.close()
        return count

    assert asyncio.run(run()) == 1


def test_backoff_grows_between_attempts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    moments: list[float] = []

    async def deliver(e: HookEvent) -> None:
        moments.append(asyncio.get_running_loop().time())
        if len(moments) < 4:
            raise ConnectionError("down")

    async def run() -> None:
        outbox = Outbox(path, backoff=0.1)
        await outbox.enqueue(event("a", HookType.POST_CREATE))
        await deliver_all(outbox, deliver)
        await outbox.close()

    asyncio.run(run())

    gaps = [b - a for a, b in itertools.pairwise(moments)]
    assert len(gaps) == 3
    assert gaps[0] >= 0.09
    assert gaps[2] > gaps[0] * 2
