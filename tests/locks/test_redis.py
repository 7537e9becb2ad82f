"""RedisLocker against a real redis-server: locks shared by instances that share only Redis."""

from __future__ import annotations

import asyncio
import signal
import socket
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from services.redis_server import RedisServer
from test_file_locker import assert_no_lost_updates, child, read_line

from tusd_py.locks import LockTimeout, LockUnavailable
from tusd_py.locks.redis import (
    CLIENT_NAME,
    RedisLocker,
    Released,
    Requested,
    events_channel,
    events_pattern,
    lock_key,
    parse_event,
    release_key,
    upload_id_of,
)
from tusd_py.protocol import is_valid_upload_id

pytestmark = pytest.mark.anyio

MakeLocker = Callable[..., RedisLocker]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ignore() -> None:
    pass


@pytest.fixture
def server(redis_server: RedisServer) -> RedisServer:
    redis_server.start()  # a test that stopped it may have failed before starting it again
    return redis_server


@pytest.fixture
def prefix(server: RedisServer) -> str:
    return server.new_prefix()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def make_locker(server: RedisServer, prefix: str) -> AsyncIterator[MakeLocker]:
    """Each call is another instance: its own clients, the same Redis and prefix."""
    made: list[RedisLocker] = []

    def make(url: str | None = None, **options: Any) -> RedisLocker:
        options.setdefault("prefix", prefix)
        options.setdefault("timeout", 5)
        options.setdefault("poll_interval", 0.05)
        locker = RedisLocker(url or server.url, **options)
        made.append(locker)
        return locker

    yield make
    for locker in made:
        await locker.aclose()


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def entered_within(locker: RedisLocker, upload_id: str, seconds: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(seconds), locker.hold(upload_id, ignore):
        return time.monotonic() - started


# -- names and messages ------------------------------------------------------------------

upload_ids = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True)


@given(prefix=st.text(max_size=20), upload_id=upload_ids)
def test_an_events_channel_names_its_upload(prefix: str, upload_id: str) -> None:
    assert upload_id_of(prefix, events_channel(prefix, upload_id)) == upload_id


@given(prefix=st.text(max_size=20), inside=st.text(max_size=40))
def test_a_channel_naming_no_valid_upload_is_ignored(prefix: str, inside: str) -> None:
    expected = inside if is_valid_upload_id(inside) else None
    assert upload_id_of(prefix, prefix + "{" + inside + "}:events") == expected


@pytest.mark.parametrize("channel", ["other:{u}:events", "tusd:{u}:other", "tusd:u:events", "tusd:{u}", "tusd:"])
def test_channels_that_are_not_this_lockers_events_are_ignored(channel: str) -> None:
    assert upload_id_of("tusd:", channel) is None


@given(
    token=st.text(st.sampled_from("0123456789abcdef"), min_size=1), at=st.floats(allow_nan=False, allow_infinity=False)
)
def test_request_messages_round_trip(token: str, at: float) -> None:
    assert parse_event(f"request {token} {at!r}") == Requested(token, at)


@given(st.text())
def test_any_other_message_is_ignored_or_understood(data: str) -> None:
    event = parse_event(data)
    assert event is None or event == Released() or data.startswith("request ")


def test_pattern_escapes_glob_characters() -> None:
    assert events_pattern("tusd:") == "tusd:{*}:events"
    assert events_pattern("a*b?[c]\\:") == "a\\*b\\?\\[c\\]\\\\:{*}:events"


# -- construction ------------------------------------------------------------------------


async def test_nothing_connects_before_the_first_hold() -> None:
    locker = RedisLocker(dead_url())
    await locker.aclose()


@pytest.mark.parametrize(
    "options",
    [{"expiry": 0}, {"timeout": -1}, {"poll_interval": 0}, {"command_timeout": 0}, {"max_connections": 0}],
)
async def test_nonsense_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RedisLocker("redis://127.0.0.1:1/0", **options)


def test_a_url_that_is_not_redis_is_refused() -> None:
    with pytest.raises(ValueError):
        RedisLocker("http://127.0.0.1:6379/0")


@pytest.mark.parametrize("upload_id", ["../x", "", "a/b", "a.b", "a:b", "{a}", "x" * 129])
async def test_malformed_id_never_reaches_redis(make_locker: MakeLocker, upload_id: str) -> None:
    # Against a dead Redis too: refused before any command, so not LockUnavailable.
    for locker in (make_locker(), make_locker(dead_url())):
        with pytest.raises(LockTimeout):
            async with locker.hold(upload_id, ignore):
                pytest.fail("held a malformed id")


# -- across instances --------------------------------------------------------------------


async def test_only_a_newer_request_on_another_instance_ends_the_holder(make_locker: MakeLocker) -> None:
    holder, late, newer = make_locker(), make_locker(timeout=0.3), make_locker()
    asked = asyncio.Event()
    now = time.time()

    async def hold() -> None:
        async with holder.hold("u", asked.set, requested_at=now):
            await asyncio.wait_for(asked.wait(), 5)

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.1)
    # An older request (a dropped connection's, arriving late) waits, then gives up.
    with pytest.raises(LockTimeout):
        async with late.hold("u", ignore, requested_at=now - 1):
            pytest.fail("entered a held lock")
    assert not asked.is_set()
    async with asyncio.timeout(3), newer.hold("u", ignore, requested_at=now + 1):
        assert asked.is_set()
    await task


async def test_waiters_are_woken_by_the_release_not_by_polling(make_locker: MakeLocker) -> None:
    holder, waiter = make_locker(), make_locker(poll_interval=30)
    held = asyncio.Event()
    let_go = asyncio.Event()

    async def hold() -> None:
        async with holder.hold("u", ignore):
            held.set()
            await let_go.wait()

    task = asyncio.create_task(hold())
    await held.wait()
    wait = asyncio.create_task(entered_within(waiter, "u", 5))
    await asyncio.sleep(0.3)
    assert not wait.done()
    released_at = time.monotonic()
    let_go.set()
    await wait
    assert time.monotonic() - released_at < 1
    await task


async def test_a_request_whose_notification_was_missed_is_read_at_renewal(
    make_locker: MakeLocker, admin: redis.Redis, prefix: str
) -> None:
    # A request left in Redis without its notification (published while the holder's
    # subscription was down): the holder's next renewal finds it there.
    locker = make_locker(expiry=0.6)
    asked = asyncio.Event()
    now = time.time()
    async with locker.hold("u", asked.set, requested_at=now):
        admin.set(release_key(prefix, "u"), repr(now - 1))
        await asyncio.sleep(0.5)
        assert not asked.is_set()
        admin.set(release_key(prefix, "u"), repr(now + 1))
        await asyncio.wait_for(asked.wait(), 1)


# A process holding the lock of upload "u": it lets go when asked ("yield") or ignores
# requests ("ignore") for `seconds`.
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from tusd_py.locks.redis import RedisLocker

    async def main() -> None:
        url, prefix, mode, seconds, expiry = sys.argv[1:6]
        locker = RedisLocker(url, prefix=prefix, timeout=10, expiry=float(expiry))
        asked = asyncio.Event()
        async with locker.hold("u", asked.set):
            print("held", flush=True)
            if mode == "yield":
                await asyncio.wait_for(asked.wait(), float(seconds))
                print("asked", flush=True)
            else:
                await asyncio.sleep(float(seconds))
        print("released", flush=True)
        await locker.aclose()

    asyncio.run(main())
    """
)

# A process taking the lock over and over for `seconds`, doing a read-modify-write of a
# counter file inside it: two holders at once would lose updates.
INCREMENTER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from tusd_py.locks.redis import RedisLocker

    async def main() -> None:
        url, prefix, counter, seconds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
        locker = RedisLocker(url, prefix=prefix, timeout=10, poll_interval=0.01)
        rounds = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            async with locker.hold("u", lambda: None):
                value = int(counter.read_text())
                await asyncio.sleep(0.0005)
                counter.write_text(str(value + 1))
            rounds += 1
        await locker.aclose()
        print(rounds, flush=True)

    asyncio.run(main())
    """
)


async def test_a_holder_in_another_process_is_asked_and_lets_go(
    make_locker: MakeLocker, server: RedisServer, prefix: str
) -> None:
    with child(HOLDER, server.url, prefix, "yield", "10", "10") as proc:
        assert read_line(proc, 15) == "held"
        started = time.monotonic()
        async with asyncio.timeout(5), make_locker(poll_interval=30).hold("u", ignore):
            elapsed = time.monotonic() - started
            assert read_line(proc, 5) == "asked"
            assert read_line(proc, 5) == "released"
        assert elapsed < 3
        assert proc.wait(timeout=5) == 0


def test_processes_never_hold_a_lock_at_once(server: RedisServer, prefix: str, tmp_path: Path) -> None:
    assert_no_lost_updates(tmp_path / "counter", 2, INCREMENTER, server.url, prefix)


# -- expiry, renewal and tokens ----------------------------------------------------------


async def test_a_killed_holder_blocks_the_upload_no_longer_than_the_expiry(
    make_locker: MakeLocker, server: RedisServer, prefix: str
) -> None:
    with child(HOLDER, server.url, prefix, "ignore", "30", "0.5") as proc:
        assert read_line(proc, 15) == "held"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        elapsed = await entered_within(make_locker(), "u", 5)
    # The lock outlived its holder (renewed every third of the expiry), and by no more
    # than the expiry and a poll.
    assert 0.2 <= elapsed < 0.5 + 0.3


async def test_renewal_keeps_a_lock_past_its_expiry(make_locker: MakeLocker, admin: redis.Redis, prefix: str) -> None:
    holder, other = make_locker(expiry=0.3), make_locker(timeout=0.2)
    async with holder.hold("u", ignore):
        await asyncio.sleep(0.9)
        with pytest.raises(LockTimeout):
            async with other.hold("u", ignore):
                pytest.fail("entered a held lock")
        assert 0 < admin.pttl(lock_key(prefix, "u")) <= 300
    assert admin.exists(lock_key(prefix, "u")) == 0


async def test_a_stalled_holder_is_asked_to_stop_and_cannot_release_its_successor(
    make_locker: MakeLocker, admin: redis.Redis, prefix: str
) -> None:
    stalled, successor, third = make_locker(expiry=0.3), make_locker(), make_locker(timeout=0.2)
    asked = asyncio.Event()
    successor_in = asyncio.Event()
    successor_out = asyncio.Event()

    async def succeed() -> None:
        async with successor.hold("u", ignore):
            successor_in.set()
            await successor_out.wait()

    async with stalled.hold("u", asked.set):
        time.sleep(0.6)  # blocks the event loop: no renewal, the lock expires
        task = asyncio.create_task(succeed())
        await asyncio.wait_for(successor_in.wait(), 2)
        # The stalled holder's next renewal finds the lock gone.
        await asyncio.wait_for(asked.wait(), 2)
    # Its release (compare-and-delete on its own token) left the successor's lock alone.
    assert admin.exists(lock_key(prefix, "u")) == 1
    with pytest.raises(LockTimeout):
        async with third.hold("u", ignore):
            pytest.fail("entered a held lock")
    successor_out.set()
    await task
    assert admin.exists(lock_key(prefix, "u")) == 0


async def test_a_lock_removed_from_redis_asks_the_holder_to_stop(
    make_locker: MakeLocker, admin: redis.Redis, prefix: str
) -> None:
    locker = make_locker(expiry=0.6)
    asked = asyncio.Event()
    async with locker.hold("u", asked.set):
        admin.delete(lock_key(prefix, "u"))
        await asyncio.wait_for(asked.wait(), 1)


# -- Redis going away --------------------------------------------------------------------


async def test_an_unreachable_redis_raises_lock_unavailable_fast(make_locker: MakeLocker) -> None:
    locker = make_locker(dead_url())
    started = time.monotonic()
    with pytest.raises(LockUnavailable) as caught:
        async with locker.hold("u", ignore):
            pytest.fail("held a lock without Redis")
    assert time.monotonic() - started < 1
    assert caught.value.upload_id == "u"


async def test_a_redis_that_does_not_answer_raises_lock_unavailable_after_the_command_timeout(
    make_locker: MakeLocker,
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        locker = make_locker(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", command_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(LockUnavailable):
            async with locker.hold("u", ignore):
                pytest.fail("held a lock without Redis")
        assert time.monotonic() - started < 2


async def test_redis_restarting_mid_hold_ends_the_holder_and_locking_resumes(
    make_locker: MakeLocker, server: RedisServer, admin: redis.Redis
) -> None:
    holder, other = make_locker(expiry=0.6), make_locker(poll_interval=30)
    async with holder.hold("warm-up", ignore), other.hold("warm-up-2", ignore):
        pass  # both have pooled connections and a subscription, which the restart kills
    asked = asyncio.Event()
    try:
        async with holder.hold("u", asked.set):
            server.stop()
            # Its renewals fail: it cannot prove it still holds the lock.
            await asyncio.wait_for(asked.wait(), 2)
            started = time.monotonic()
            with pytest.raises(LockUnavailable):
                async with other.hold("v", ignore):
                    pytest.fail("held a lock without Redis")
            assert time.monotonic() - started < 1
    finally:
        server.start()
    # The same lockers, not restarted: locking works again, and so do notifications.
    deadline = time.monotonic() + 5
    while len(admin.client_list(_type="pubsub")) < 2:
        assert time.monotonic() < deadline, "the lockers did not subscribe again"
        await asyncio.sleep(0.05)
    let_go = asyncio.Event()
    held = asyncio.Event()

    async def hold() -> None:
        async with holder.hold("u", ignore):
            held.set()
            await let_go.wait()

    task = asyncio.create_task(hold())
    await asyncio.wait_for(held.wait(), 2)
    wait = asyncio.create_task(entered_within(other, "u", 5))
    await asyncio.sleep(0.2)
    assert not wait.done()
    let_go.set()
    assert await wait < 1.5
    await task


async def test_a_waiter_gets_lock_unavailable_when_redis_goes_away(
    make_locker: MakeLocker, server: RedisServer
) -> None:
    holder, waiter = make_locker(), make_locker(poll_interval=0.1)
    try:
        async with holder.hold("u", ignore):
            wait = asyncio.create_task(entered_within(waiter, "u", 5))
            await asyncio.sleep(0.2)
            server.stop()
            with pytest.raises(LockUnavailable):
                await asyncio.wait_for(wait, 2)
    finally:
        server.start()


# -- resources ---------------------------------------------------------------------------


async def test_many_held_locks_share_a_few_connections(make_locker: MakeLocker, admin: redis.Redis) -> None:
    def connections() -> int:
        return sum(1 for client in admin.client_list() if client["name"] == CLIENT_NAME)

    before = connections()
    locker = make_locker(max_connections=4)
    all_in = asyncio.Event()
    inside = 0

    async def hold(n: int) -> None:
        nonlocal inside
        async with locker.hold(f"upload-{n}", ignore):
            inside += 1
            if inside == 200:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 10)
            await asyncio.sleep(0.1)

    task = asyncio.gather(*(hold(n) for n in range(200)))
    await asyncio.wait_for(all_in.wait(), 10)
    during = connections() - before
    await task
    # Four for commands, one for notifications.
    assert 2 <= during <= 5


async def test_notifications_work_under_a_prefix_with_glob_characters(
    make_locker: MakeLocker, server: RedisServer
) -> None:
    odd = server.new_prefix() + "*?[a]\\"
    holder, waiter = make_locker(prefix=odd), make_locker(prefix=odd, poll_interval=30)
    # Under a prefix that the odd one's pattern would match if it were not escaped.
    bystander = make_locker(prefix=odd.replace("*?[a]\\", "xya"))
    asked = asyncio.Event()
    async with bystander.hold("u", asked.set):
        async with holder.hold("u", ignore):
            wait = asyncio.create_task(entered_within(waiter, "u", 5))
            await asyncio.sleep(0.2)
        assert await wait < 1.5
        # The bystander's lock is another lock: nobody asked it to let go.
        assert not asked.is_set()
