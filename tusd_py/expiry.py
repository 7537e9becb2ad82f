"""The expiration extension's sweep: unfinished uploads idle too long are removed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from .background import BackgroundTask
from .locks import Locker, LockTimeout, LockUnavailable
from .stores import LeftoverSweeper, Lister, Terminater, UploadInfo, UploadNotFound
from .stores.base import Store

log = logging.getLogger("tusd_py.expiry")


class ExpirySweeper:
    def __init__(
        self,
        store: Store,
        locker: Locker,
        expire_after: float,
        interval: float | None = None,
        on_expired: Callable[[UploadInfo], Awaitable[None]] | None = None,
    ) -> None:
        assert isinstance(store, Lister) and isinstance(store, Terminater)
        self.store = store
        self.locker = locker
        self.expire_after = expire_after
        # Often enough that an expired upload lingers at most a fraction of its lifetime.
        self.interval = interval if interval is not None else min(max(expire_after / 4, 1.0), 300.0)
        self.on_expired = on_expired
        self._background = BackgroundTask(self._run)

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except LockUnavailable as error:
                log.warning("expiry sweep skipped: %s", error)
            except Exception:
                log.exception("expiry sweep failed; trying again later")
            await asyncio.sleep(self.interval)

    async def sweep(self, now: float | None = None) -> list[str]:
        """Remove every unfinished upload idle for longer than `expire_after`."""
        assert isinstance(self.store, Lister) and isinstance(self.store, Terminater)
        removed = []
        async for upload_id in self.store.list_uploads():
            moment = time.time() if now is None else now
            try:
                info = await self.store.get_info(upload_id)
                if info.is_complete or info.modified_at + self.expire_after >= moment:
                    continue
                async with self.locker.hold(upload_id, _keep_going):
                    await self.store.terminate(upload_id)
                removed.append(upload_id)
                if self.on_expired is not None:
                    await self.on_expired(info)
            except (UploadNotFound, LockTimeout):
                continue
        if removed:
            log.info("expired %d unfinished uploads", len(removed))
        if isinstance(self.store, LeftoverSweeper):
            # Leftovers of uploads no request will ever finish (an instance died mid-way):
            # abandoned after the same idle time as an unfinished upload.
            leftovers = await self.store.abort_abandoned(self.expire_after)
            if leftovers:
                log.info("removed %d leftovers of abandoned uploads", leftovers)
        return removed


def _keep_going() -> None:
    """The sweep holds a lock only for a moment; it need not react to release requests."""
