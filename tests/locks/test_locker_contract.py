"""What every locker promises (locks/base.py), checked on Memory, File and Redis lockers alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from services.redis_server import RedisServer

from tusd_py.locks import FileLocker, Locker, LockTimeout, MemoryLocker
from tusd_py.locks.redis import RedisLocker

pytestmark = pytest.mark.anyio

MakeLocker = Callable[[float], Locker]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ignore() -> None:
    pass


@pytest.fixture(params=["memory", "file", "redis"])
def locker_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[float], Locker]]:
    """Makes lockers of one kind that share their locks (same process, directory or Redis)."""
    if request.param == "memory":
        shared = MemoryLocker()

        def memory(timeout: float) -> Locker:
            shared.timeout = timeout
            return shared

        yield memory
    elif request.param == "file":
        yield lambda timeout: FileLocker(tmp_path / "locks", timeout=timeout, poll_interval=0.01)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.start()
        prefix = server.new_prefix()
        # A short expiry: the holders renew their locks during these tests too.
        yield lambda timeout: RedisLocker(server.url, timeout=timeout, prefix=prefix, expiry=0.3, poll_interval=0.05)


@pytest.fixture
async def make_locker(locker_kind: Callable[[float], Locker]) -> AsyncIterator[MakeLocker]:
    made: list[Locker] = []

    def make(timeout: float) -> Locker:
        locker = locker_kind(timeout)
        made.append(locker)
        return locker

    yield make
    for locker in made:
        if isinstance(locker, RedisLocker):
            await locker.aclose()


async def test_second_request_waits_until_the_asked_holder_lets_go(make_locker: MakeLocker) -> None:
    locker = make_locker(5)
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


async def test_only_a_newer_request_preempts_the_holder(make_locker: MakeLocker) -> None:
    locker = make_locker(0.3)
    asked: list[str] = []
    now = time.time()
    async with locker.hold("u", lambda: asked.append("holder"), requested_at=now):
        with pytest.raises(LockTimeout):
            async with locker.hold("u", ignore, requested_at=now - 5):
                pytest.fail("entered a held lock")
        await asyncio.sleep(0.1)
        assert asked == []
        with pytest.raises(LockTimeout):
            async with locker.hold("u", ignore, requested_at=now + 5):
                pytest.fail("entered a held lock")
        await asyncio.sleep(0.1)
        assert asked == ["holder"]


async def test_holder_is_asked_once(make_locker: MakeLocker) -> None:
    locker = make_locker(0.15)
    asked: list[int] = []
    async with locker.hold("u", lambda: asked.append(1)):
        for _ in range(3):
            with pytest.raises(LockTimeout):
                async with locker.hold("u", ignore):
                    pytest.fail("entered a held lock")
        await asyncio.sleep(0.1)
    assert asked == [1]


async def test_lock_timeout_when_holder_does_not_let_go(make_locker: MakeLocker) -> None:
    locker = make_locker(0.3)
    async with locker.hold("u", ignore):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            async with locker.hold("u", ignore):
                pytest.fail("entered a held lock")
        elapsed = time.monotonic() - started
    assert caught.value.upload_id == "u"
    assert 0.25 <= elapsed < 2
    async with asyncio.timeout(1), locker.hold("u", ignore):
        pass


async def test_lock_released_when_body_raises(make_locker: MakeLocker) -> None:
    locker = make_locker(0.3)
    with pytest.raises(ZeroDivisionError):
        async with locker.hold("u", ignore):
            1 / 0  # noqa: B018
    async with asyncio.timeout(1), locker.hold("u", ignore):
        pass


async def test_different_uploads_do_not_block_each_other(make_locker: MakeLocker) -> None:
    locker = make_locker(0.2)
    async with locker.hold("a", ignore), asyncio.timeout(1), locker.hold("b", ignore):
        pass


async def test_cancelled_waiter_leaves_no_trace(make_locker: MakeLocker) -> None:
    locker = make_locker(5)
    async with locker.hold("u", ignore):

        async def wait() -> None:
            async with locker.hold("u", ignore):
                pytest.fail("entered a held lock")

        waiter = asyncio.create_task(wait())
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1), locker.hold("u", ignore):
        pass


async def test_a_timed_out_request_does_not_ask_the_next_holder(make_locker: MakeLocker) -> None:
    locker = make_locker(0.2)
    now = time.time()
    async with locker.hold("u", ignore, requested_at=now - 1):
        with pytest.raises(LockTimeout):
            async with locker.hold("u", ignore, requested_at=now + 1):
                pass
    # The timed-out request, though newer, was for the previous holder and is gone.
    asked: list[int] = []
    async with locker.hold("u", lambda: asked.append(1), requested_at=now):
        await asyncio.sleep(0.3)
    assert asked == []


async def test_holders_never_overlap(make_locker: MakeLocker) -> None:
    lockers = [make_locker(5) for _ in range(2)]
    inside = 0
    entries = 0

    async def worker(locker: Locker) -> None:
        nonlocal inside, entries
        for _ in range(20):
            async with locker.hold("u", ignore):
                inside += 1
                entries += 1
                assert inside == 1
                await asyncio.sleep(0)
                inside -= 1

    await asyncio.wait_for(asyncio.gather(*(worker(lockers[i % 2]) for i in range(4))), 20)
    assert entries == 80
