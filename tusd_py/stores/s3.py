"""S3Store: uploads as S3 multipart uploads, on AWS S3, MinIO or Ceph RGW alike.

Objects of upload `<id>` under the prefix:
  `<id>`           the upload's bytes: the multipart upload's target, an object once complete;
  `<id>.info`      JSON: size, metadata, concatenation, protocol, the multipart upload id and
                   the part layout;
  `<id>.part`      the tail: bytes after the last stored part, shorter than a part, with the
                   number of the part they begin in its metadata;
  `<id>.final.<f>` an empty marker: final upload <f> waits for this partial upload.

The offset is always what S3 holds: the parts ListParts reports, plus the tail if it
still counts (see s3_layout.stored_extent). No counter is kept beside them, so a
process that dies between any two S3 calls leaves an upload whose offset is right.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import replace

from aiobotocore.session import AioSession

from ..protocol import is_valid_upload_id
from .base import Buffer, NewUpload, UploadInfo, UploadNotFound
from .s3_append import MEMORY_PART_LIMIT, PartWriter, Spool, Tail
from .s3_bucket import Bucket, Missing, S3Unavailable
from .s3_budget import MemoryBudget
from .s3_concat import copy_parts
from .s3_layout import MAX_PART, MIN_PART, choose_layout
from .s3_record import Record, State
from .s3_sweep import sweep_abandoned
from .settle import settle

__all__ = ["S3Store", "S3Unavailable"]

MiB = 1024 * 1024
READ_BLOCK = MiB


class S3Store:
    """Uploads in an S3 bucket. Construction does no I/O; call `aclose()` when done.

    Parts up to 64 MiB are gathered in memory, larger ones in temporary files.

    Credentials come from botocore's usual chain (AWS_* variables, shared files, instance
    roles). `part_size` is raised per upload when 10,000 parts would not hold it.
    `max_in_flight` parts of one upload are stored at once; every part buffer of the
    store comes out of `memory_budget` bytes. `session` shares one botocore session (its
    loaded service models) among several stores.
    """

    # S3's largest object: the handler refuses longer uploads up front (413).
    max_upload_size = 5 * 1024 * 1024 * MiB

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size: int = 8 * MiB,
        path_style: bool = False,
        max_in_flight: int = 4,
        memory_budget: int = 256 * MiB,
        session: AioSession | None = None,
    ) -> None:
        if not MIN_PART <= part_size <= MAX_PART:
            raise ValueError(f"part_size must be between 5 MiB and 5 GiB (S3's limits), not {part_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        if memory_budget < min(part_size, MEMORY_PART_LIMIT):
            raise ValueError(f"memory_budget ({memory_budget}) must hold at least one part ({part_size})")
        # Like tusd: a prefix names a folder.
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.part_size = part_size
        self.max_in_flight = max_in_flight
        self.budget = MemoryBudget(memory_budget)
        self.bucket = Bucket(
            bucket,
            endpoint_url=endpoint_url,
            region=region,
            path_style=path_style,
            # Every part the budget holds can be in flight, beside the small requests.
            max_connections=memory_budget // part_size + 32,
            session=session,
        )

    async def aclose(self) -> None:
        await self.bucket.aclose()

    def _key(self, upload_id: str) -> str:
        # Ids are validated by the handler; this check keeps the store safe on its own.
        if not is_valid_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        return self.prefix + upload_id

    # -- state ------------------------------------------------------------------------

    async def _read_record(self, upload_id: str) -> tuple[Record, float]:
        found = await self.bucket.get(self._key(upload_id) + ".info")
        if found is None:
            raise UploadNotFound(upload_id)
        try:
            return Record.load(found[0]), found[1]
        except (ValueError, KeyError, TypeError):
            # A damaged info object: the upload cannot be served, say so plainly.
            raise UploadNotFound(upload_id) from None

    async def _write_record(self, record: Record) -> None:
        await self.bucket.put(self._key(record.id) + ".info", record.dump())

    async def _load(self, upload_id: str) -> State:
        record, modified = await self._read_record(upload_id)
        key = self._key(upload_id)
        if record.multipart is not None and not record.completed:
            parts, tail_head = await asyncio.gather(
                self.bucket.parts(key, record.multipart), self.bucket.head(key + ".part")
            )
            if parts is not None:
                tail = None
                if tail_head is not None and tail_head.metadata.get("part", "").isdigit():
                    tail = Tail(int(tail_head.metadata["part"]), tail_head.size)
                    modified = max(modified, tail_head.modified)
                modified = max([modified, *(p.modified for p in parts.values())])
                return State(record, modified, parts=parts, tail=tail)
            # The multipart upload is gone: completed just before a crash, or removed.
        head = await self.bucket.head(key)
        if head is not None:
            return State(record, max(modified, head.modified), finished_size=head.size)
        if record.completed or record.multipart is not None:
            raise UploadNotFound(upload_id)
        # A final upload whose partials are not yet concatenated.
        return State(record, modified)

    async def _waiting_finals(self, record: Record) -> tuple[str, ...]:
        if not record.is_partial:
            return ()
        marker = self._key(record.id) + ".final."
        return tuple([key[len(marker) :] async for key, _ in self.bucket.keys(marker)])

    async def _info(self, state: State) -> UploadInfo:
        record = state.record
        size = record.size
        if size is None and state.finished_size is not None:
            size = state.finished_size
        key = self._key(record.id)
        return UploadInfo(
            id=record.id,
            size=size,
            offset=state.offset,
            metadata=record.metadata,
            created_at=record.created_at,
            modified_at=state.modified,
            is_partial=record.is_partial,
            is_final=record.is_final,
            partial_uploads=record.partial_uploads,
            waiting_finals=await self._waiting_finals(record),
            storage={"Type": "s3store", "Bucket": self.bucket.name, "Key": key},
            protocol=record.protocol,
        )

    async def _finish(self, state: State) -> State:
        """Turn a multipart upload that holds every byte into the upload's object.

        Safe to run twice at once (a HEAD while the PATCH that stored the last byte
        finishes): the loser finds the multipart upload gone and the object there.
        """
        record = state.record
        assert record.multipart is not None
        key = self._key(record.id)
        extent = state.extent
        etags = {number: state.parts[number].etag for number in range(1, extent.next_part) if number in state.parts}
        try:
            if extent.tail_counted and state.tail is not None:
                found = await self.bucket.get(key + ".part")
                if found is None:
                    # Another request finished the upload meanwhile, or it was removed.
                    raise Missing(key)
                if len(found[0]) != state.tail.size:
                    raise S3Unavailable(f"the tail of {key} changed while the upload was being finished")
                etags[extent.next_part] = await self.bucket.upload_part(
                    key, record.multipart, extent.next_part, found[0]
                )
            if etags:
                await self.bucket.complete(key, record.multipart, etags)
            else:
                # S3 cannot complete a multipart upload of no parts.
                await self.bucket.put(key, b"")
                await self.bucket.abort(key, record.multipart)
        except Missing:
            if await self.bucket.head(key) is None:
                raise UploadNotFound(record.id) from None
        if state.tail is not None:
            await self.bucket.delete(key + ".part")
        record = replace(record, completed=True)
        await self._write_record(record)
        return State(record, time.time(), finished_size=extent.offset)

    async def _finish_if_complete(self, state: State) -> State:
        if state.finished_size is None and state.record.size is not None and state.offset == state.record.size:
            return await self._finish(state)
        return state

    # -- the Store protocol -----------------------------------------------------------

    async def create(self, upload: NewUpload) -> UploadInfo:
        key = self._key(upload.id)
        # S3 has no create-if-absent on every server: look first. Ids carry 128 random
        # bits; only an id chosen by a hook could collide, and it is refused here.
        if await self.bucket.head(key + ".info") is not None:
            raise FileExistsError(f"upload {upload.id!r} exists")
        multipart = None
        completed = False
        if upload.size == 0 and not upload.is_final:
            await self.bucket.put(key, b"")
            completed = True
        elif not upload.is_final:
            multipart = await self.bucket.start_multipart(key)
        now = time.time()
        record = Record(
            id=upload.id,
            size=upload.size,
            metadata=dict(upload.metadata),
            created_at=now,
            layout=choose_layout(upload.size, self.part_size),
            multipart=multipart,
            completed=completed,
            is_partial=upload.is_partial,
            is_final=upload.is_final,
            partial_uploads=upload.partial_uploads,
            protocol=upload.protocol,
        )
        await self._write_record(record)
        state = State(record, now, finished_size=0 if completed else None)
        return await self._info(state)

    async def get_info(self, upload_id: str) -> UploadInfo:
        state = await self._finish_if_complete(await self._load(upload_id))
        return await self._info(state)

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Buffer],
        accept: Callable[[], bool] | None = None,
    ) -> int:
        state = await self._load(upload_id)
        if state.offset != offset:
            raise S3Unavailable(f"upload {upload_id!r} is at offset {state.offset}, not {offset}")
        multipart = state.record.multipart
        if state.finished_size is not None or multipart is None:
            async for chunk in chunks:
                if len(chunk):
                    raise ValueError("bytes past the upload's length")
            return state.offset
        writer = PartWriter(
            self.bucket,
            self._key(upload_id),
            multipart,
            state.record.layout,
            state.record.size,
            state.parts,
            state.tail,
            self.budget,
            self.max_in_flight,
        )
        if accept is None:
            return await self._write(state, writer, chunks)
        with tempfile.TemporaryFile() as file:
            spool = Spool(file)
            async for chunk in chunks:
                await spool.write(chunk)
            if not accept():
                return offset
            return await self._write(state, writer, spool.blocks())

    async def _write(self, state: State, writer: PartWriter, chunks: AsyncIterable[Buffer]) -> int:
        async def finish() -> int:
            await writer.finish()
            done = await self._finish_if_complete(replace(state, parts=writer.parts, tail=writer.tail))
            return done.offset

        try:
            async for chunk in chunks:
                await writer.feed(chunk)
        finally:
            # Whatever ended the body (its end, an error, a cancellation), what arrived is kept.
            offset = await settle(asyncio.ensure_future(finish()))
        return offset

    async def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        key = self._key(upload_id)
        if end <= start:
            # S3 has no empty range; still, an unknown upload is not found.
            await self._read_record(upload_id)
            return
        begun = False
        try:
            async for block in self.bucket.stream(key, start, end, READ_BLOCK):
                begun = True
                yield block
            return
        except Missing:
            if begun:
                raise S3Unavailable(f"{key} went away while it was read") from None
        # Unfinished: only the tail can be read (the parts of a multipart upload cannot).
        state = await self._load(upload_id)
        extent = state.extent
        if not extent.tail_counted or state.tail is None:
            raise UploadNotFound(upload_id)
        tail_start = extent.offset - state.tail.size
        if start < tail_start or end > extent.offset:
            raise S3Unavailable(f"bytes {start}-{end} of unfinished upload {upload_id!r} are not readable yet")
        try:
            async for block in self.bucket.stream(key + ".part", start - tail_start, end - tail_start, READ_BLOCK):
                yield block
        except Missing:
            raise UploadNotFound(upload_id) from None

    # -- optional abilities -----------------------------------------------------------

    async def terminate(self, upload_id: str) -> None:
        record, _ = await self._read_record(upload_id)
        key = self._key(upload_id)
        # The info object first: from here on the upload is gone for every instance, and
        # whatever a crash leaves behind is swept by abort_abandoned.
        await self.bucket.delete(key + ".info")
        if record.multipart is not None and not record.completed:
            await self.bucket.abort(key, record.multipart)
        markers = [k async for k, _ in self.bucket.keys(key + ".final.")]
        await asyncio.gather(*(self.bucket.delete(k) for k in (key, key + ".part", *markers)))

    async def declare_length(self, upload_id: str, size: int) -> UploadInfo:
        state = await self._load(upload_id)
        state.record = replace(state.record, size=size)
        await self._write_record(state.record)
        return await self._info(await self._finish_if_complete(state))

    async def add_waiting_final(self, partial_id: str, final_id: str) -> None:
        await self._read_record(partial_id)
        self._key(final_id)
        await self.bucket.put(self._key(partial_id) + ".final." + final_id, b"")

    async def concatenate(self, final_id: str, partial_ids: tuple[str, ...]) -> UploadInfo:
        record, _ = await self._read_record(final_id)
        sources = [self._key(pid) for pid in partial_ids]
        sizes = []
        for partial_id in partial_ids:
            partial = await self._load(partial_id)
            if partial.finished_size is None:
                raise ValueError(f"partial upload {partial_id!r} is not complete")
            sizes.append(partial.finished_size)
        key = self._key(final_id)
        if sum(sizes):
            multipart = await self.bucket.start_multipart(key)
            try:
                etags = await copy_parts(self.bucket, self.budget, self.max_in_flight, key, multipart, sources, sizes)
                await self.bucket.complete(key, multipart, etags)
            except BaseException:
                await asyncio.shield(self.bucket.abort(key, multipart))
                raise
        else:
            await self.bucket.put(key, b"")
        await self._write_record(replace(record, size=sum(sizes), completed=True))
        return await self.get_info(final_id)

    async def list_uploads(self) -> AsyncIterator[str]:
        async for key, _ in self.bucket.keys(self.prefix):
            name = key[len(self.prefix) :]
            if name.endswith(".info") and is_valid_upload_id(name[: -len(".info")]):
                yield name[: -len(".info")]

    async def abort_abandoned(self, older_than: float) -> int:
        """Remove what crashed or interrupted uploads left behind, older than `older_than`
        seconds: multipart uploads no info object names, objects without an info object,
        and uploads whose bytes are gone. Returns how many things were removed."""

        async def read_record(upload_id: str) -> Record:
            return (await self._read_record(upload_id))[0]

        return await sweep_abandoned(self.bucket, self.prefix, read_record, older_than)
