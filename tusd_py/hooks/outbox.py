"""A durable outbox for non-blocking hook events, in SQLite.

Events are written (and committed) before the request that caused them is answered, so
they survive a crash or SIGKILL of the server and an outage of the receiver. A delivery
loop sends them at least once, in order per upload, retrying with backoff; delivered
events are deleted at once, so the table holds only what is still owed. Several
processes may share one outbox file: each event is leased by one deliverer at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..background import BackgroundTask
from .events import HookEvent, event_from_json, event_to_json

log = logging.getLogger("tusd_py.hooks.outbox")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hook_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    upload_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0,
    lease_owner INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hook_outbox_upload ON hook_outbox (upload_id, seq);
"""


def _process_alive(pid: int) -> bool:
    """A lease held by a process that died (say, SIGKILL) is void at once, not at expiry.

    The outbox lives on the local disk, so its deliverers are processes of this host.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outbox:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        lease: float = 120.0,
        batch: int = 32,
    ) -> None:
        self.path = Path(path)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lease = lease
        self.batch = batch
        # One thread owns the connection: writes happen in the order they were asked for.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tusd-outbox")
        self._db: sqlite3.Connection | None = None
        self._wake: asyncio.Event | None = None
        self._background: BackgroundTask | None = None

    # -- the database, on its own thread ---------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            # Private: events carry the request headers of uploads (Authorization among them).
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the process, which is what we promise.
            db.execute("PRAGMA synchronous=NORMAL")
            db.create_function("process_alive", 1, _process_alive, deterministic=False)
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _insert(self, event_id: str, upload_id: str, body: str) -> None:
        self._connect().execute(
            "INSERT OR IGNORE INTO hook_outbox (event_id, upload_id, body) VALUES (?, ?, ?)",
            (event_id, upload_id, body),
        )

    def _claim(self, now: float, limit: int) -> list[tuple[int, str]]:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                """SELECT seq, body FROM hook_outbox AS o
                   WHERE next_attempt <= ? AND (lease_until <= ? OR NOT process_alive(lease_owner))
                     AND NOT EXISTS (SELECT 1 FROM hook_outbox AS p
                                     WHERE p.upload_id = o.upload_id AND p.seq < o.seq)
                   ORDER BY seq LIMIT ?""",
                (now, now, limit),
            ).fetchall()
            db.executemany(
                "UPDATE hook_outbox SET lease_until = ?, lease_owner = ? WHERE seq = ?",
                [(now + self.lease, os.getpid(), seq) for seq, _ in rows],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [(int(seq), str(body)) for seq, body in rows]

    def _forget_own_leases(self) -> None:
        # A process that is only starting holds no lease; one under its pid was taken by an
        # earlier process with the same pid (a container's pid 1, restarted).
        self._connect().execute("UPDATE hook_outbox SET lease_until = 0 WHERE lease_owner = ?", (os.getpid(),))

    def _delivered(self, seq: int) -> None:
        self._connect().execute("DELETE FROM hook_outbox WHERE seq = ?", (seq,))

    def _failed(self, seq: int, now: float) -> None:
        db = self._connect()
        (attempts,) = db.execute("SELECT attempts FROM hook_outbox WHERE seq = ?", (seq,)).fetchone() or (0,)
        delay = min(self.backoff * 2**attempts, self.max_backoff)
        db.execute(
            "UPDATE hook_outbox SET attempts = attempts + 1, next_attempt = ?, lease_until = 0 WHERE seq = ?",
            (now + delay, seq),
        )

    def _pending(self) -> int:
        (count,) = self._connect().execute("SELECT COUNT(*) FROM hook_outbox").fetchone()
        return int(count)

    # -- the async face ----------------------------------------------------------------

    async def enqueue(self, event: HookEvent) -> None:
        """Commit the event to disk; returns once it is durable."""
        await self._run(self._insert, event.id, event.upload.id, json.dumps(event_to_json(event)))
        if self._wake is not None:
            self._wake.set()

    async def pending(self) -> int:
        """How many events are still owed to the receivers."""
        return await self._run(self._pending)

    def start(self, deliver: Callable[[HookEvent], Awaitable[None]], poll_interval: float = 0.5) -> None:
        if self._background is None or not self._background.running:
            self._wake = asyncio.Event()
            self._background = BackgroundTask(lambda: self._deliver_loop(deliver, poll_interval))
            self._background.start()

    async def stop(self) -> None:
        if self._background is not None:
            await self._background.stop()

    async def close(self) -> None:
        await self.stop()
        if self._db is not None:
            db, self._db = self._db, None
            await self._run(db.close)
        self._executor.shutdown(wait=False)

    async def _deliver_loop(self, deliver: Callable[[HookEvent], Awaitable[None]], poll_interval: float) -> None:
        assert self._wake is not None
        try:
            await self._run(self._forget_own_leases)
        except sqlite3.Error:
            log.exception("outbox unreadable; trying again")
        # Each event is delivered in its own task, so a slow receiver answer for one upload
        # never holds up the others; order within an upload comes from the claim query.
        in_flight: set[asyncio.Task[None]] = set()
        wake = self._wake

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            wake.set()

        try:
            while True:
                wake.clear()
                claimed: list[tuple[int, str]] = []
                if len(in_flight) < self.batch:
                    try:
                        claimed = await self._run(self._claim, time.time(), self.batch - len(in_flight))
                    except sqlite3.Error:
                        log.exception("outbox unreadable; trying again")
                for seq, body in claimed:
                    task = asyncio.get_running_loop().create_task(self._deliver_one(seq, body, deliver))
                    in_flight.add(task)
                    task.add_done_callback(done)
                if claimed:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_interval):
                        await wake.wait()
        finally:
            for task in in_flight:
                task.cancel()

    async def _deliver_one(self, seq: int, body: str, deliver: Callable[[HookEvent], Awaitable[None]]) -> None:
        try:
            await deliver(event_from_json(json.loads(body)))
        except Exception as error:
            log.warning("hook delivery failed, will retry: %s", error)
            await self._run(self._failed, seq, time.time())
        else:
            await self._run(self._delivered, seq)
