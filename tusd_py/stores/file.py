"""FileStore: one data file and one JSON info file per upload, in one directory.

The data file's size is the upload's offset, so no counter beside the bytes can
disagree with them after a crash. The info file holds what does not change with each
PATCH (size, metadata, concatenation) and is replaced atomically when it changes.

Bulk I/O (appends, reads, concatenation, listing) runs in worker threads. The small
metadata operations (a stat, a tiny JSON file, an unlink) run inline: on a local disk
they cost less than the hand-off to a thread and back, which on a busy single core also
waits for the GIL to come round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..protocol import is_valid_upload_id
from .base import Buffer, NewUpload, UploadInfo, UploadNotFound
from .settle import settle

# Received buffers are gathered and written with one pwritev call in a worker thread,
# while the event loop receives the next batch: memory per upload is about two batches
# whatever the file size. A batch is at most BATCH_BYTES (few thread hand-offs for one
# big upload), and all uploads of a store share BUFFER_BUDGET (many small ones stay lean).
BATCH_BYTES = 4 * 1024 * 1024
MIN_BATCH_BYTES = 128 * 1024
BUFFER_BUDGET = 64 * 1024 * 1024
# Well under IOV_MAX (1024 on Linux).
BATCH_BUFFERS = 256
READ_BLOCK = 1024 * 1024


def _pwritev_all(fd: int, buffers: list[Buffer], offset: int) -> int:
    """Write every buffer at `offset`, continuing after short writes."""
    total = 0
    views = [memoryview(b) for b in buffers]
    while views:
        written = os.pwritev(fd, views, offset + total)
        total += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
    return total


def _read_lines(path: str) -> tuple[str, ...]:
    try:
        with open(path) as lines:
            return tuple(dict.fromkeys(line for line in lines.read().splitlines() if line))
    except FileNotFoundError:
        return ()


class FileStore:
    """Uploads on the local disk under `directory`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._prefix = os.path.join(str(self.directory), "")
        self._appending = 0

    # Paths are plain strings: this code runs on every request, and pathlib's objects
    # cost more than the system calls they name.

    def _data_path(self, upload_id: str) -> str:
        # Ids are validated by the handler; this check keeps the store safe on its own.
        if not is_valid_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        return self._prefix + upload_id

    def _info_path(self, upload_id: str) -> str:
        return self._data_path(upload_id) + ".info"

    def _finals_path(self, upload_id: str) -> str:
        return self._data_path(upload_id) + ".finals"

    # -- info -----------------------------------------------------------------------

    @staticmethod
    def _record(info: UploadInfo) -> bytes:
        return json.dumps(
            {
                "id": info.id,
                "size": info.size,
                "metadata": info.metadata,
                "created_at": info.created_at,
                "is_partial": info.is_partial,
                "is_final": info.is_final,
                "partial_uploads": list(info.partial_uploads),
                "protocol": info.protocol,
            }
        ).encode()

    def _write_info(self, info: UploadInfo) -> None:
        path = self._info_path(info.id)
        tmp = path + ".tmp"
        # Private like the data: metadata may name people and files.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, self._record(info))
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def _read_info(self, upload_id: str) -> UploadInfo:
        data_path = self._data_path(upload_id)
        try:
            fd = os.open(data_path + ".info", os.O_RDONLY)
            try:
                raw = os.read(fd, 1 << 20)
            finally:
                os.close(fd)
            record: dict[str, Any] = json.loads(raw)
            stat = os.stat(data_path)
            return self._info_from_record(record, stat, data_path)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            # A missing or damaged info file: the upload cannot be served, say so plainly.
            raise UploadNotFound(upload_id) from None

    @staticmethod
    def _info_from_record(record: dict[str, Any], stat: os.stat_result, data_path: str) -> UploadInfo:
        return UploadInfo(
            id=record["id"],
            size=record["size"],
            offset=stat.st_size,
            metadata=record["metadata"],
            created_at=record["created_at"],
            modified_at=stat.st_mtime,
            is_partial=record["is_partial"],
            is_final=record["is_final"],
            partial_uploads=tuple(record["partial_uploads"]),
            waiting_finals=_read_lines(data_path + ".finals"),
            storage={"Type": "filestore", "Path": data_path},
            # Records written before protocols were told apart are all tus uploads.
            protocol=record.get("protocol", "tus"),
        )

    def _create(self, upload: NewUpload) -> UploadInfo:
        data_path = self._data_path(upload.id)
        # O_EXCL: an id chosen by a hook can never overwrite an existing upload.
        fd = os.open(data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        now = time.time()
        info = UploadInfo(
            id=upload.id,
            size=upload.size,
            offset=0,
            metadata=dict(upload.metadata),
            created_at=now,
            modified_at=now,
            is_partial=upload.is_partial,
            is_final=upload.is_final,
            partial_uploads=upload.partial_uploads,
            storage={"Type": "filestore", "Path": data_path},
            protocol=upload.protocol,
        )
        # Written in place, not renamed over: nothing can read it before it exists, and
        # a reader that races the write sees an unreadable info, i.e. no upload yet.
        fd = os.open(data_path + ".info", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, self._record(info))
        finally:
            os.close(fd)
        return info

    async def create(self, upload: NewUpload) -> UploadInfo:
        return self._create(upload)

    async def get_info(self, upload_id: str) -> UploadInfo:
        return self._read_info(upload_id)

    # -- bytes ----------------------------------------------------------------------

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Buffer],
        accept: Callable[[], bool] | None = None,
    ) -> int:
        try:
            fd = os.open(self._data_path(upload_id), os.O_WRONLY)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        loop = asyncio.get_running_loop()
        self._appending += 1
        position = offset
        pending: asyncio.Future[int] | None = None
        batch: list[Buffer] = []
        batch_bytes = 0
        ended_normally = False
        try:
            async for chunk in chunks:
                batch.append(chunk)
                batch_bytes += len(chunk)
                if batch_bytes >= self._batch_limit() or len(batch) >= BATCH_BUFFERS:
                    if pending is not None:
                        position += await settle(pending)
                    pending = loop.run_in_executor(None, _pwritev_all, fd, batch, position)
                    batch, batch_bytes = [], 0
            ended_normally = True
        finally:
            # A cancelled or failed request still keeps the bytes it received: the writes
            # in flight are awaited even under cancellation, and the fd outlives them.
            try:
                if pending is not None:
                    position += await settle(pending)
                if batch:
                    position += await settle(loop.run_in_executor(None, _pwritev_all, fd, batch, position))
            finally:
                if accept is not None and not (ended_normally and accept()):
                    os.ftruncate(fd, offset)
                    position = offset
                os.close(fd)
                self._appending -= 1
        return position

    def _batch_limit(self) -> int:
        share = BUFFER_BUDGET // max(1, self._appending)
        return max(MIN_BATCH_BYTES, min(BATCH_BYTES, share))

    async def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            fd = os.open(self._data_path(upload_id), os.O_RDONLY)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        try:
            position = start
            while position < end:
                block = await anyio.to_thread.run_sync(os.pread, fd, min(READ_BLOCK, end - position), position)
                if not block:
                    break
                position += len(block)
                yield block
        finally:
            os.close(fd)

    # -- optional abilities ---------------------------------------------------------

    def _terminate(self, upload_id: str) -> None:
        found = False
        for path in (self._finals_path(upload_id), self._info_path(upload_id), self._data_path(upload_id)):
            try:
                os.unlink(path)
                found = found or not path.endswith(".finals")
            except FileNotFoundError:
                pass
        if not found:
            raise UploadNotFound(upload_id)

    async def terminate(self, upload_id: str) -> None:
        self._terminate(upload_id)

    def _declare_length(self, upload_id: str, size: int) -> UploadInfo:
        info = replace(self._read_info(upload_id), size=size)
        self._write_info(info)
        return info

    async def declare_length(self, upload_id: str, size: int) -> UploadInfo:
        return self._declare_length(upload_id, size)

    def _add_waiting_final(self, partial_id: str, final_id: str) -> None:
        # Its own append-only file, not the info file: linking a final needs no lock on
        # the partial, and a small O_APPEND write is atomic against concurrent ones.
        self._read_info(partial_id)
        fd = os.open(self._finals_path(partial_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, final_id.encode() + b"\n")
        finally:
            os.close(fd)

    async def add_waiting_final(self, partial_id: str, final_id: str) -> None:
        self._add_waiting_final(partial_id, final_id)

    def _concatenate(self, final_id: str, partial_ids: tuple[str, ...]) -> UploadInfo:
        final = self._read_info(final_id)
        tmp = self._data_path(final_id) + ".concat"
        try:
            with open(tmp, "wb") as out:
                for partial_id in partial_ids:
                    self._copy_into(out.fileno(), partial_id)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        size = os.stat(tmp).st_size
        # Size first, then bytes: if we crash between the two the final upload reads as
        # unfinished (offset 0 < size) and is completed again, never as finished-but-empty.
        self._write_info(replace(final, size=size))
        os.replace(tmp, self._data_path(final_id))
        return self._read_info(final_id)

    def _copy_into(self, out_fd: int, partial_id: str) -> None:
        try:
            src = os.open(self._data_path(partial_id), os.O_RDONLY)
        except FileNotFoundError:
            raise UploadNotFound(partial_id) from None
        try:
            # copy_file_range lets the kernel move the bytes without Python copies.
            remaining = os.fstat(src).st_size
            while remaining:
                copied = os.copy_file_range(src, out_fd, remaining)
                if copied == 0:
                    break
                remaining -= copied
        finally:
            os.close(src)

    async def concatenate(self, final_id: str, partial_ids: tuple[str, ...]) -> UploadInfo:
        return await anyio.to_thread.run_sync(self._concatenate, final_id, partial_ids)

    async def list_uploads(self) -> AsyncIterator[str]:
        names = await anyio.to_thread.run_sync(os.listdir, self.directory)
        for name in names:
            if name.endswith(".info"):
                yield name[: -len(".info")]
