"""RedisLocker: locks shared by every instance that reaches one Redis.

A lock is the key `<prefix>{<id>}:lock`, set with NX and an expiry to a token that only
its holder knows. The holder renews the expiry while it holds the lock and deletes the
key only while it still holds its token, so a crashed holder blocks an upload for at
most `expiry`, and a holder that stalled past it cannot delete its successor's lock.

A request that finds the lock held leaves its arrival time in `<prefix>{<id>}:release`
(the newest waiting request's, like FileLocker's `.release` file) and publishes it on
`<prefix>{<id>}:events`, addressed to the current holder's token; the holder lets go
only when that time is newer than its own request's. The key is there for a holder whose
notification was lost: each renewal reads it. A holder that lets go while requests wait
publishes `released` on the same channel, so the waiters retry at once rather than
polling Redis; they still poll now and then, for the holder that expired instead.

Each locker reads every event through one pattern subscription, however many uploads it
holds or waits for, and runs its commands on a bounded pool of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError
from redis.retry import Retry

from ..protocol import is_valid_upload_id
from .base import LockTimeout, LockUnavailable

log = logging.getLogger("tusd_py.locks")

CLIENT_NAME = "tusd-py-locker"

# KEYS: lock, release. ARGV: token, expiry ms, request time, release-key expiry ms, channel.
# Takes the lock if free; otherwise records the request for the holder. Either way in one
# step, so a request that lands while the lock changes hands is never recorded for the
# holder that just took it over (the new holder clears what was asked of the old one).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
local newest = redis.call('GET', KEYS[2])
if (not newest) or tonumber(ARGV[3]) > tonumber(newest) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  local holder = redis.call('GET', KEYS[1]) or ''
  redis.call('PUBLISH', ARGV[5], 'request ' .. holder .. ' ' .. ARGV[3])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 0
"""

# KEYS: lock, release. ARGV: token, expiry ms. The newest waiting request's time ('' for
# none) while the token still holds the lock; nil once it has lost it.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('GET', KEYS[2]) or ''
"""

# KEYS: lock, release. ARGV: token, channel. Deletes the lock only for its own token.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], 'released')
end
return 1
"""


# -- names and messages (pure) ------------------------------------------------------------


def lock_key(prefix: str, upload_id: str) -> str:
    # The braces make an upload's keys share a hash slot, should the Redis be a cluster.
    return f"{prefix}{{{upload_id}}}:lock"


def release_key(prefix: str, upload_id: str) -> str:
    return f"{prefix}{{{upload_id}}}:release"


def events_channel(prefix: str, upload_id: str) -> str:
    return f"{prefix}{{{upload_id}}}:events"


def events_pattern(prefix: str) -> str:
    """The PSUBSCRIBE pattern matching every upload's events channel under `prefix`."""
    escaped = "".join("\\" + char if char in "*?[]\\" else char for char in prefix)
    return escaped + "{*}:events"


def upload_id_of(prefix: str, channel: str) -> str | None:
    """The upload whose events channel `channel` is, or None if it is not one."""
    head, tail = prefix + "{", "}:events"
    if not (channel.startswith(head) and channel.endswith(tail)):
        return None
    upload_id = channel[len(head) : len(channel) - len(tail)]
    return upload_id if is_valid_upload_id(upload_id) else None


@dataclass(frozen=True)
class Released:
    """The holder let go: waiters should try again."""


@dataclass(frozen=True)
class Requested:
    """A request that arrived at `requested_at` asks the holder with `token` to let go."""

    token: str
    requested_at: float


def parse_event(data: str) -> Released | Requested | None:
    """An events channel message, or None for anything this locker does not publish."""
    if data == "released":
        return Released()
    kind, _, rest = data.partition(" ")
    token, _, at = rest.partition(" ")
    if kind != "request" or not token:
        return None
    requested_at = parse_time(at)
    return None if requested_at is None else Requested(token, requested_at)


def parse_time(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# -- the locker ---------------------------------------------------------------------------


class _Hold:
    """One `hold` call: a waiter until it takes the lock under its token, then the holder."""

    def __init__(self, upload_id: str, requested_at: float, on_release_requested: Callable[[], None]) -> None:
        self.upload_id = upload_id
        self.requested_at = requested_at
        self.token = secrets.token_hex(16)
        self.wake = asyncio.Event()
        self._on_release_requested = on_release_requested
        self._asked = False

    def ask_to_release(self) -> None:
        if not self._asked:
            self._asked = True
            self._on_release_requested()

    def requested(self, event: Requested) -> None:
        # Only a newer request preempts (see Locker.hold); a request for another token was
        # meant for a previous holder.
        if event.token == self.token and event.requested_at >= self.requested_at:
            self.ask_to_release()


class _Events:
    """One pattern subscription for a locker, fanning its messages out to the holds."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._holds: dict[str, set[_Hold]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, hold: _Hold) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="redis-locker-events")
        self._holds.setdefault(hold.upload_id, set()).add(hold)

    def remove(self, hold: _Hold) -> None:
        holds = self._holds.get(hold.upload_id)
        if holds is not None:
            holds.discard(hold)
            if not holds:
                del self._holds[hold.upload_id]

    def wake(self, upload_id: str) -> None:
        for hold in self._holds.get(upload_id, ()):
            hold.wake.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    async def _run(self) -> None:
        delay = 0.05
        lost = False
        while True:
            pubsub: PubSub = self._client.pubsub()
            try:
                await pubsub.psubscribe(events_pattern(self._prefix))
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        if lost:
                            log.warning("Redis lock notifications restored")
                        lost, delay = False, 0.05
                        # Whatever was released while nobody listened: try again now.
                        for upload_id in list(self._holds):
                            self.wake(upload_id)
                    elif message["type"] == "pmessage":
                        self._dispatch(message["channel"], message["data"])
            except (RedisError, OSError) as error:
                if not lost:
                    log.warning("Redis lock notifications lost (%s); waiters poll until they return", error)
                lost = True
            except Exception:
                # Whatever it was, waiters only lose their wake-ups: listen again.
                log.exception("Redis lock notifications failed; subscribing again")
                lost = True
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _dispatch(self, channel: str, data: str) -> None:
        upload_id = upload_id_of(self._prefix, channel)
        event = parse_event(data)
        if upload_id is None or event is None:
            return
        if isinstance(event, Released):
            self.wake(upload_id)
            return
        for hold in list(self._holds.get(upload_id, ())):
            try:
                hold.requested(event)
            except Exception:
                log.exception("release callback of upload %s failed", upload_id)


class RedisLocker:
    """Locks for every instance sharing one Redis (see the module's docstring).

    `timeout`: how long `hold` waits for a lock before LockTimeout. `expiry`: how long a
    lock outlives a holder that stopped renewing it (renewed every third of it).
    `prefix`: of every key and channel. `poll_interval`: how often a waiter tries again
    without a notification. `command_timeout`: bound on connecting and on each command;
    past it the lock service counts as unreachable (LockUnavailable). `max_connections`:
    command connections, besides the one for notifications. Nothing connects until the
    first `hold`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 20.0,
        expiry: float = 10.0,
        prefix: str = "tusd:",
        poll_interval: float = 0.5,
        command_timeout: float = 2.0,
        max_connections: int = 16,
    ) -> None:
        if timeout < 0:
            raise ValueError("timeout must not be negative")
        if expiry <= 0 or poll_interval <= 0 or command_timeout <= 0:
            raise ValueError("expiry, poll_interval and command_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.timeout = timeout
        self.expiry = expiry
        self.prefix = prefix
        self.poll_interval = poll_interval
        options: dict[str, Any] = {
            "socket_timeout": command_timeout,
            "socket_connect_timeout": command_timeout,
            # One retry on a fresh connection absorbs a pooled connection that died with a
            # restarted Redis; more would only delay LockUnavailable while Redis is down.
            "retry": Retry(NoBackoff(), 1),
            "decode_responses": True,
            # RESP2: understood by every Redis (and fork) of the last decade.
            "protocol": 2,
            "client_name": CLIENT_NAME,
        }
        self._client = Redis.from_pool(
            BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=command_timeout, **options)
        )
        # Notifications get their own connection, which blocks reading, and no retry of
        # their own: _Events reconnects and knows it did.
        self._events = _Events(
            Redis.from_url(url, **{**options, "retry": Retry(NoBackoff(), 0), "socket_timeout": None}),
            prefix,
        )
        self._acquire: AsyncScript = self._client.register_script(_ACQUIRE)
        self._renew: AsyncScript = self._client.register_script(_RENEW)
        self._release: AsyncScript = self._client.register_script(_RELEASE)
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def _expiry_ms(self) -> int:
        return max(1, math.ceil(self.expiry * 1000))

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_requested: Callable[[], None], *, requested_at: float | None = None
    ) -> AsyncIterator[None]:
        if not is_valid_upload_id(upload_id):
            raise LockTimeout(upload_id)
        if self._closed:
            raise LockUnavailable(upload_id, "the locker is closed")
        hold = _Hold(upload_id, time.time() if requested_at is None else requested_at, on_release_requested)
        self._events.add(hold)
        try:
            await self._take(hold)
            renewer = asyncio.create_task(self._keep(hold), name=f"redis-lock-renewal-{upload_id}")
            try:
                yield
            finally:
                renewer.cancel()
                # The lock is let go even when the request is being cancelled; if the
                # caller cannot wait, the release finishes on its own.
                await asyncio.shield(self._spawn(self._let_go(hold)))
        finally:
            self._events.remove(hold)

    async def aclose(self) -> None:
        """Let go of the locks being released, stop listening and disconnect."""
        self._closed = True
        if self._background:
            await asyncio.wait(self._background)
        await self._events.aclose()
        await self._client.aclose()

    async def _take(self, hold: _Hold) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        upload_id = hold.upload_id
        keys = [lock_key(self.prefix, upload_id), release_key(self.prefix, upload_id)]
        # Waiters refresh the request they leave each time they try; it outlives a few tries.
        release_ms = max(self._expiry_ms, math.ceil(self.poll_interval * 3000))
        channel = events_channel(self.prefix, upload_id)
        args = [hold.token, self._expiry_ms, repr(hold.requested_at), release_ms, channel]
        while True:
            hold.wake.clear()
            try:
                taken = await self._run(upload_id, self._acquire, keys, args)
            except BaseException:
                # The lock may have been taken before the reply was lost: let go of it
                # rather than leave it to expire.
                self._spawn(self._let_go(hold, quiet=True))
                raise
            if taken:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LockTimeout(upload_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.poll_interval, remaining)):
                    await hold.wake.wait()

    async def _keep(self, hold: _Hold) -> None:
        """Renew the lock while it is held; ask the holder to stop once it cannot be proven."""
        upload_id = hold.upload_id
        keys = [lock_key(self.prefix, upload_id), release_key(self.prefix, upload_id)]
        args = [hold.token, self._expiry_ms]
        while True:
            await asyncio.sleep(self.expiry / 3)
            try:
                newest = await self._run(upload_id, self._renew, keys, args)
            except LockUnavailable as error:
                log.warning("%s; asking its request to stop", error)
                hold.ask_to_release()
                continue
            if newest is None:
                log.warning("the lock of upload %s expired or was removed; asking its request to stop", upload_id)
                hold.ask_to_release()
                return
            if (at := parse_time(newest)) is not None:
                hold.requested(Requested(hold.token, at))

    async def _let_go(self, hold: _Hold, *, quiet: bool = False) -> None:
        upload_id = hold.upload_id
        keys = [lock_key(self.prefix, upload_id), release_key(self.prefix, upload_id)]
        try:
            await self._run(upload_id, self._release, keys, [hold.token, events_channel(self.prefix, upload_id)])
        except LockUnavailable as error:
            if not quiet:
                log.warning("%s; the lock frees when it expires", error)

    async def _run(self, upload_id: str, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise LockUnavailable(upload_id, f"Redis: {error}") from error

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task
