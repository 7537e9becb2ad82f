"""FileLocker: locks shared by the worker processes of one host, with fcntl.flock.

A lock is a file `<id>.lock` under the lock directory held with flock. A process that
wants a held lock writes its request's arrival time to `<id>.release`; the holder
watches that file and lets go when the time is newer than its own request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from ..protocol import is_valid_upload_id
from .base import LockTimeout


class FileLocker:
    def __init__(self, directory: str | os.PathLike[str], timeout: float = 20.0, poll_interval: float = 0.05) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.poll_interval = poll_interval

    def _try_lock(self, path: Path) -> int | None:
        """Lock the file at `path` if free; retry while another holder unlinks it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        # The previous holder unlinks the file as it lets go; a lock on an unlinked
        # inode protects nothing, so only a lock on the file still at `path` counts.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_lock(path)
        return fd

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_requested: Callable[[], None], *, requested_at: float | None = None
    ) -> AsyncIterator[None]:
        if not is_valid_upload_id(upload_id):
            raise LockTimeout(upload_id)
        since = time.time() if requested_at is None else requested_at
        lock_path = self.directory / f"{upload_id}.lock"
        release_path = self.directory / f"{upload_id}.release"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while (fd := self._try_lock(lock_path)) is None:
            _ask_to_release(release_path, since)
            if loop.time() >= deadline:
                raise LockTimeout(upload_id)
            await asyncio.sleep(self.poll_interval)
        with contextlib.suppress(FileNotFoundError):
            release_path.unlink()
        watcher = asyncio.create_task(self._watch(release_path, since, on_release_requested))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            os.close(fd)

    async def _watch(self, release_path: Path, since: float, on_release_requested: Callable[[], None]) -> None:
        # Only a newer request preempts the holder (see Locker.hold).
        while _read_request_time(release_path) < since:
            await asyncio.sleep(self.poll_interval * 2)
        on_release_requested()


def _read_request_time(path: Path) -> float:
    try:
        return float(path.read_text() or "inf")
    except FileNotFoundError:
        return float("-inf")
    except ValueError:
        return float("inf")


def _ask_to_release(path: Path, since: float) -> None:
    """Leave the newest waiting request's arrival time where the holder looks for it."""
    if _read_request_time(path) >= since:
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(repr(since))
    os.replace(tmp, path)
