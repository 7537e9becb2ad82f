"""Processing: measure each finished upload's duration, then settle its charge once.

Assets in `processing` are the job queue, persisted in the database. A worker leases one
at a time (see AssetService.claim_processing: instances sharing a PostgreSQL database each
take another asset); a worker that dies (even by SIGKILL) leaves a lease that runs out, and
the asset is picked up again. Settlement is idempotent, so a retry never charges twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy.engine import Row

from ..background import BackgroundTask
from ..stores import Store, UploadNotFound
from .media import MediaUnreadable, measure_duration
from .service import PROCESSING, AssetService

log = logging.getLogger("tusd_py.assets")


class Processor:
    def __init__(
        self,
        service: AssetService,
        store: Store,
        *,
        lease: float = 300.0,
        max_attempts: int = 3,
        poll_interval: float = 2.0,
        reconcile_interval: float = 300.0,
    ) -> None:
        self.service = service
        self.store = store
        self.lease = lease
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        self._wake = asyncio.Event()
        self._background = BackgroundTask(self._run)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def reconcile(self) -> None:
        """Finish the assets whose last byte is stored but that never reached processing
        (a crash, or a database error, between the two)."""
        for asset_id in await self.service.unfinished_uploads():
            try:
                info = await self.store.get_info(asset_id)
            except UploadNotFound:
                continue
            if info.is_complete and await self.service.finish_upload(asset_id, info.offset):
                log.info("asset %s: upload found complete, processing it", asset_id)

    async def _run(self) -> None:
        next_reconcile = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() >= next_reconcile:
                next_reconcile = loop.time() + self.reconcile_interval
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("could not reconcile unfinished uploads; trying again later")
            self._wake.clear()
            try:
                row = await self.service.claim_processing(self.lease)
            except Exception:
                log.exception("could not claim processing work; trying again")
                row = None
            if row is not None:
                try:
                    await self.process(row)
                except Exception:
                    # The database went away mid-settle, say (a PostgreSQL restart or
                    # failover): the lease runs out and this or another instance retries.
                    log.exception("processing %s failed; it is retried when its lease runs out", row.id)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def process(self, row: Row[Any]) -> None:
        try:
            async with self._local_copy(row.id) as path:
                duration = await anyio.to_thread.run_sync(measure_duration, path)
        except MediaUnreadable as error:
            await self.service.fail(row.id, "media_unreadable", str(error), from_states=(PROCESSING,))
            return
        except UploadNotFound:
            await self.service.fail(row.id, "upload_missing", "the uploaded bytes are gone", from_states=(PROCESSING,))
            return
        except Exception:
            log.exception("processing %s failed (attempt %d)", row.id, row.attempts)
            if row.attempts >= self.max_attempts:
                await self.service.fail(
                    row.id, "processing_failed", "the media could not be processed", from_states=(PROCESSING,)
                )
            return  # the lease runs out and another attempt follows
        state = await self.service.settle(row.id, duration)
        log.info("asset %s processed: %s s, %s", row.id, duration, state or "settled already")

    @asynccontextmanager
    async def _local_copy(self, upload_id: str) -> AsyncIterator[str]:
        """A path to the upload's bytes: the store's own file when it has one."""
        info = await self.store.get_info(upload_id)
        path = info.storage.get("Path")
        if path and os.path.exists(path):
            yield path
            return
        with tempfile.TemporaryDirectory() as directory:
            copy = Path(directory) / "media"
            with copy.open("wb") as out:
                async for block in self.store.read(upload_id, 0, info.offset):
                    await anyio.to_thread.run_sync(out.write, block)
            yield str(copy)
