"""MemoryLocker: one holder per upload within a process; newer requests ask the holder to let go."""

from __future__ import annotations

import asyncio
import time

import pytest

from tusd_py.locks import LockTimeout, MemoryLocker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ignore() -> None:
    pass


async def test_hold_is_exclusive_and_second_waits_for_release() -> None:
    locker = MemoryLocker(timeout=5)
    events: list[str] = []
    release = asyncio.Event()
    entered = asyncio.Event()

    async def first() -> None:
        async with locker.hold("u", release.set):
            events.append("first in")
            entered.set()
            await asyncio.wait_for(release.wait(), 5)
            events.append("first out")

    async def second() -> None:
        await entered.wait()
        async with locker.hold("u", ignore):
            events.append("second in")

    await asyncio.wait_for(asyncio.gather(first(), second()), 5)
    assert events == ["first in", "first out", "second in"]


async def test_holder_is_asked_once() -> None:
    locker = MemoryLocker(timeout=0.2)
    asked: list[int] = []
    async with locker.hold("u", lambda: asked.append(1)):
        for _ in range(3):
            with pytest.raises(LockTimeout):
                async with locker.hold("u", ignore):
                    pytest.fail("entered a held lock")
    assert asked == [1]


async def test_lock_timeout_when_holder_does_not_let_go() -> None:
    locker = MemoryLocker(timeout=0.3)
    asked = asyncio.Event()
    async with locker.hold("u", asked.set):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            async with locker.hold("u", ignore):
                pytest.fail("entered a held lock")
        elapsed = time.monotonic() - started
        assert asked.is_set()
    assert caught.value.upload_id == "u"
    assert 0.25 <= elapsed < 2
    # Once the holder is gone the lock is free again at once.
    async with asyncio.timeout(1), locker.hold("u", ignore):
        pass


async def test_different_uploads_do_not_block_each_other() -> None:
    locker = MemoryLocker(timeout=0.2)
    async with locker.hold("a", ignore), asyncio.timeout(1), locker.hold("b", ignore):
        pass


async def test_lock_released_when_body_raises() -> None:
    locker = MemoryLocker(timeout=0.2)
    with pytest.raises(ZeroDivisionError):
        async with locker.hold("u", ignore):
            1 / 0  # noqa: B018
    async with locker.hold("u", ignore):
        pass


async def test_cancelled_waiter_leaves_no_trace() -> None:
    locker = MemoryLocker(timeout=5)
    async with locker.hold("u", ignore):

        async def wait() -> None:
            async with locker.hold("u", ignore):
                pytest.fail("entered a held lock")

        waiter = asyncio.create_task(wait())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1), locker.hold("u", ignore):
        pass


async def test_many_tasks_never_overlap() -> None:
    locker = MemoryLocker(timeout=5)
    inside = 0
    entries = 0

    async def worker() -> None:
        nonlocal inside, entries
        for _ in range(20):
            async with locker.hold("u", ignore):
                inside += 1
                entries += 1
                assert inside == 1
                await asyncio.sleep(0)
                inside -= 1

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(5))), 10)
    assert entries == 100


async def test_an_older_request_waits_instead_of_preempting_a_newer_holder() -> None:
    # A PATCH of a dropped connection that reaches the lock late must not end the PATCH
    # that the client sent after reconnecting.
    locker = MemoryLocker(timeout=0.3)
    asked: list[str] = []
    now = time.time()
    async with locker.hold("u", lambda: asked.append("holder"), requested_at=now):
        with pytest.raises(LockTimeout):
            async with locker.hold("u", ignore, requested_at=now - 5):
                pytest.fail("entered a held lock")
        assert asked == []
        with pytest.raises(LockTimeout):
            async with locker.hold("u", ignore, requested_at=now + 5):
                pytest.fail("entered a held lock")
        assert asked == ["holder"]
