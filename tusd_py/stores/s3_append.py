"""Cutting a request body into an upload's parts and storing them while it streams.

Each part is gathered in a buffer reserved from the store's MemoryBudget, then uploaded
in the background while the next one fills: up to `max_in_flight` parts per upload are
on their way at once. What is left when the body ends (shorter than its part) is
written as the tail object, naming the part it begins, so that any instance continues
from it. Bytes that must be judged before they are kept (a checksum) are first staged
in a temporary file: memory stays bounded whatever the size of the request.
"""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

import anyio.to_thread

from .base import Buffer
from .s3_bucket import Bucket, S3Unavailable, StoredPart
from .s3_budget import MemoryBudget
from .s3_layout import Extent, Layout, stored_extent

# Staged bytes go to disk this much at a time, and are read back in blocks this size.
SPOOL_BATCH = 1024 * 1024
# Well under IOV_MAX (1024 on Linux).
SPOOL_BUFFERS = 256
# Parts up to this size are gathered in memory; larger ones (only uploads of hundreds of
# GiB need them, to stay within 10,000 parts) in a temporary file, so that memory per
# upload stays bounded whatever its length.
MEMORY_PART_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class Tail:
    part: int
    size: int


def extent_of(layout: Layout, parts: dict[int, StoredPart], tail: Tail | None) -> Extent:
    sizes = {number: part.size for number, part in parts.items()}
    return stored_extent(layout, sizes, tail.part if tail else None, tail.size if tail else 0)


class PartWriter:
    """Stores one append's bytes after the upload's stored parts and tail.

    `parts` (every listed part, also those beyond a gap) and `tail` are updated as the
    writer stores things, so that afterwards they describe the upload as S3 has it.
    """

    def __init__(
        self,
        bucket: Bucket,
        key: str,
        multipart: str,
        layout: Layout,
        size: int | None,
        parts: dict[int, StoredPart],
        tail: Tail | None,
        budget: MemoryBudget,
        max_in_flight: int,
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.tail_key = key + ".part"
        self.multipart = multipart
        self.layout = layout
        self.size = size
        self.parts = parts
        self.tail = tail
        self.budget = budget
        self.max_in_flight = max_in_flight
        extent = extent_of(layout, parts, tail)
        self.position = extent.offset
        self._tail_pending = extent.tail_counted
        self._part = extent.next_part
        # The part being filled, and its length once full.
        self._buffer: PartBuffer | None = None
        self._length = 0
        self._filled = 0
        self._reserved = 0
        self._in_flight: dict[int, asyncio.Future[None]] = {}

    async def feed(self, chunk: Buffer) -> None:
        view = memoryview(chunk).cast("B")
        while view:
            if self._buffer is None:
                await self._open_part()
            assert self._buffer is not None
            room = self._length - self._filled
            if room <= 0:
                raise ValueError("bytes past the upload's length")
            piece = view[:room]
            await self._buffer.write(piece)
            self._filled += len(piece)
            self.position += len(piece)
            view = view[len(piece) :]
            if self._filled == self._length:
                await self._ship()

    async def _open_part(self) -> None:
        self._length = self.layout.length_of(self._part, self.size)
        self._buffer = MemoryPart() if self._length <= MEMORY_PART_LIMIT else DiskPart()
        self._reserved = await self.budget.reserve(self._buffer.memory_needed(self._length))
        self._filled = 0
        if self._tail_pending:
            # The tail begins this part: its bytes go first.
            found = await self.bucket.get(self.tail_key)
            if self.tail is None or found is None or len(found[0]) != self.tail.size:
                raise S3Unavailable(f"the tail of {self.key} changed while it was being appended to")
            await self._buffer.write(found[0])
            self._filled = self.tail.size
            self._tail_pending = False

    async def _ship(self) -> None:
        while len(self._in_flight) >= self.max_in_flight:
            done, _ = await asyncio.wait(self._in_flight.values(), return_when=asyncio.FIRST_COMPLETED)
            for number in [n for n, task in self._in_flight.items() if task in done]:
                # A failed part ends the body here; `finish` reports it.
                self._in_flight.pop(number).result()
        assert self._buffer is not None
        number, body, reserved = self._part, self._buffer, self._reserved
        self._buffer, self._reserved, self._filled = None, 0, 0
        self._part += 1
        self._in_flight[number] = asyncio.ensure_future(self._upload(number, body, reserved))

    async def _upload(self, number: int, body: PartBuffer, reserved: int) -> None:
        try:
            size, content = await body.content()
            etag = await self.bucket.upload_part(self.key, self.multipart, number, content)
            self.parts[number] = StoredPart(size, etag, time.time())
        finally:
            body.close()
            self.budget.release(reserved)

    async def finish(self) -> Extent:
        """Wait for the parts in flight, then keep the unfinished part as the tail object.

        Run to its end even when the append is cancelled (see `settle`): a part in
        flight or a tail not yet written would otherwise lose bytes the client sent.
        """
        try:
            outcomes = await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            self._in_flight.clear()
            failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
            extent = extent_of(self.layout, self.parts, self.tail)
            if self._filled and extent.next_part == self._part and extent.offset < self.position:
                # Every part before this one is stored: the unfinished part becomes the tail.
                assert self._buffer is not None
                _, content = await self._buffer.content()
                await self.bucket.put(self.tail_key, content, {"part": str(self._part)})
                self.tail = Tail(self._part, self._filled)
            elif self.tail is not None and not extent.tail_counted and failure is None:
                # Its bytes are in a stored part now; it no longer counts, and goes.
                await self.bucket.delete(self.tail_key)
                self.tail = None
            if failure is not None:
                raise failure
            return extent_of(self.layout, self.parts, self.tail)
        finally:
            if self._buffer is not None:
                self._buffer.close()
            self._buffer = None
            self.budget.release(self._reserved)
            self._reserved = 0


class MemoryPart:
    """A part gathered in memory: the whole part is reserved from the budget."""

    def __init__(self) -> None:
        # A BytesIO, not a bytearray: the HTTP client sends it in small slices, where it
        # would copy a bytearray whole (twice) while sending it.
        self._file = io.BytesIO()

    @staticmethod
    def memory_needed(length: int) -> int:
        return length

    async def write(self, piece: Buffer) -> None:
        self._file.write(piece)

    async def content(self) -> tuple[int, IO[bytes]]:
        size = self._file.tell()
        self._file.seek(0)
        return size, self._file

    def close(self) -> None:
        self._file.close()


class DiskPart:
    """A part gathered in a temporary file, written in batches off the event loop."""

    def __init__(self) -> None:
        # Closed by close(), which the writer calls whatever happens to the part.
        self._file = tempfile.TemporaryFile()  # noqa: SIM115
        self._spool = Spool(self._file)

    @staticmethod
    def memory_needed(length: int) -> int:
        # Only the batch waiting to be written is in memory.
        return SPOOL_BATCH

    async def write(self, piece: Buffer) -> None:
        await self._spool.write(piece)

    async def content(self) -> tuple[int, IO[bytes]]:
        await self._spool.flush()
        self._file.seek(0)
        return self._spool.size, self._file

    def close(self) -> None:
        self._file.close()


PartBuffer = MemoryPart | DiskPart


class Spool:
    """An append's bytes on disk until they may be kept."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._batch: list[Buffer] = []
        self._batch_bytes = 0
        self.size = 0

    async def write(self, chunk: Buffer) -> None:
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        if self._batch_bytes >= SPOOL_BATCH or len(self._batch) >= SPOOL_BUFFERS:
            await self.flush()

    async def flush(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if batch:
            self.size += await anyio.to_thread.run_sync(_write_all, self._file.fileno(), batch)

    async def blocks(self) -> AsyncIterator[bytes]:
        await self.flush()
        position = 0
        while position < self.size:
            block = await anyio.to_thread.run_sync(os.pread, self._file.fileno(), SPOOL_BATCH, position)
            if not block:
                raise OSError("the staged bytes are shorter than written")
            position += len(block)
            yield block


def _write_all(fd: int, buffers: list[Buffer]) -> int:
    views = [memoryview(b) for b in buffers]
    total = 0
    while views:
        written = os.writev(fd, views)
        total += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
    return total
