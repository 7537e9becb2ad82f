"""MemoryLocker: locks for the requests of one process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from .base import LockTimeout


class _Holder:
    def __init__(self, on_release_requested: Callable[[], None], requested_at: float) -> None:
        self.on_release_requested = on_release_requested
        self.requested_at = requested_at
        self.released = asyncio.Event()
        self.asked = False

    def ask_to_release(self) -> None:
        if not self.asked:
            self.asked = True
            self.on_release_requested()


class MemoryLocker:
    def __init__(self, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self._holders: dict[str, _Holder] = {}

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_requested: Callable[[], None], *, requested_at: float | None = None
    ) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        since = time.time() if requested_at is None else requested_at
        while (current := self._holders.get(upload_id)) is not None:
            if since >= current.requested_at:
                current.ask_to_release()
            try:
                async with asyncio.timeout_at(deadline):
                    await current.released.wait()
            except TimeoutError:
                raise LockTimeout(upload_id) from None
        holder = _Holder(on_release_requested, since)
        self._holders[upload_id] = holder
        try:
            yield
        finally:
            del self._holders[upload_id]
            holder.released.set()
