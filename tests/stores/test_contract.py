"""What every store does, whatever keeps its bytes: one suite, run against each store.

The S3 store runs against a real S3 server (Ceph's gateway, see services/ceph_rgw.py)
with 5 MiB parts, so that a few MiB cross part boundaries.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiobotocore.session import AioSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tusd_py.stores import (
    Buffer,
    Concater,
    FileStore,
    LengthDeferrer,
    Lister,
    NewUpload,
    S3Store,
    Store,
    Terminater,
    UploadInfo,
    UploadNotFound,
)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = 5 * MiB


class FullStore(Store, Terminater, LengthDeferrer, Concater, Lister, Protocol):
    """What the suite expects of a store."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Backend:
    kind: str
    directory: Path
    s3: Any = None
    bucket: str = ""
    session: AioSession | None = None

    def new_store(self) -> FullStore:
        """A store over fresh, empty storage. No I/O."""
        if self.kind == "file":
            return FileStore(self.directory / uuid.uuid4().hex)
        return S3Store(
            self.bucket,
            prefix=uuid.uuid4().hex,
            endpoint_url=self.s3.endpoint,
            region=self.s3.region,
            part_size=PART,
            path_style=True,
            max_in_flight=2,
            memory_budget=4 * PART,
            session=self.session,
        )

    def reopen(self, store: FullStore) -> FullStore:
        """Another store over the same storage, as after a restart or on another instance."""
        if isinstance(store, FileStore):
            return FileStore(store.directory)
        assert isinstance(store, S3Store)
        return S3Store(
            self.bucket,
            prefix=store.prefix,
            endpoint_url=self.s3.endpoint,
            region=self.s3.region,
            part_size=PART,
            path_style=True,
            session=self.session,
        )


async def close(store: object) -> None:
    if isinstance(store, S3Store):
        await store.aclose()


@pytest.fixture(scope="session")
def contract_bucket(ceph_s3: Any) -> str:
    return str(ceph_s3.new_bucket("contract"))


@pytest.fixture(scope="session")
def s3_session() -> AioSession:
    # Loaded once: botocore's service models take a third of a second per session.
    return AioSession()


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "file":
        return Backend("file", tmp_path)
    s3 = request.getfixturevalue("ceph_s3")
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return Backend(
        "s3", tmp_path, s3, request.getfixturevalue("contract_bucket"), request.getfixturevalue("s3_session")
    )


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[FullStore]:
    store = backend.new_store()
    yield store
    await close(store)


class Boom(Exception):
    pass


async def stream(*chunks: Buffer) -> AsyncIterator[Buffer]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def stream_then_raise(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    raise Boom


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


async def read_all(store: Store, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    if end is None:
        end = (await store.get_info(upload_id)).offset
    return b"".join([block async for block in store.read(upload_id, start, end)])


async def new(store: Store, upload_id: str = "up1", size: int | None = 100, **kwargs: Any) -> UploadInfo:
    return await store.create(NewUpload(upload_id, size, **kwargs))


def test_offers_every_ability(backend: Backend) -> None:
    store = backend.new_store()
    for ability in (Store, Terminater, LengthDeferrer, Concater, Lister):
        assert isinstance(store, ability)


async def test_create_and_get_info(store: FullStore) -> None:
    metadata = {"filename": "résumé 履歴書 ü.pdf", "flag": None, "empty": ""}
    created = await new(store, metadata=metadata)
    assert (created.offset, created.size, created.metadata) == (0, 100, metadata)
    assert not created.is_complete and not created.size_is_deferred
    info = await store.get_info("up1")
    assert (info.id, info.size, info.offset, info.metadata) == ("up1", 100, 0, metadata)
    assert info.created_at == created.created_at
    assert info.modified_at >= info.created_at - 1
    assert info.storage["Type"] in ("filestore", "s3store")
    assert (info.is_partial, info.is_final, info.partial_uploads, info.waiting_finals) == (False, False, (), ())


@pytest.mark.parametrize("protocol", ["tus", "draft"])
async def test_protocol_is_kept(backend: Backend, store: FullStore, protocol: str) -> None:
    await new(store, protocol=protocol)
    assert (await store.get_info("up1")).protocol == protocol
    other = backend.reopen(store)
    try:
        assert (await other.get_info("up1")).protocol == protocol
    finally:
        await close(other)


async def test_create_refuses_an_existing_id(store: FullStore) -> None:
    await new(store)
    await store.append("up1", 0, stream(b"abc"))
    with pytest.raises(FileExistsError):
        await new(store)
    assert (await store.get_info("up1")).offset == 3


@pytest.mark.parametrize("upload_id", ["nope", "../up1", "up1.info", "", "a/b"])
async def test_unknown_or_malformed_ids_are_not_found(store: FullStore, upload_id: str) -> None:
    await new(store)
    with pytest.raises(UploadNotFound):
        await store.get_info(upload_id)
    with pytest.raises(UploadNotFound):
        await store.append(upload_id, 0, stream(b"x"))
    with pytest.raises(UploadNotFound):
        await read_all(store, upload_id, 0, 1)
    with pytest.raises(UploadNotFound):
        await store.terminate(upload_id)
    with pytest.raises(UploadNotFound):
        await store.declare_length(upload_id, 1)
    with pytest.raises(UploadNotFound):
        await store.add_waiting_final(upload_id, "up1")
    assert (await store.get_info("up1")).offset == 0


async def test_appends_add_up(store: FullStore) -> None:
    await new(store, size=None)
    assert await store.append("up1", 0, stream(b"hello", b" ", b"world")) == 11
    assert (await store.get_info("up1")).offset == 11
    assert await store.append("up1", 11, stream(bytearray(b"!!"), memoryview(b"??"))) == 15
    assert await store.append("up1", 15, stream()) == 15
    assert (await store.get_info("up1")).offset == 15
    assert await read_all(store, "up1") == b"hello world!!??"


async def test_appends_across_part_boundaries(backend: Backend, store: FullStore) -> None:
    payload = random.Random(1).randbytes(2 * PART + 12345)
    await new(store, size=len(payload))
    # Calls that end inside a part, exactly on a boundary, and at the end; odd chunk sizes.
    cuts = [0, PART - 1000, 2 * PART, len(payload)]
    for call, (a, b) in enumerate(pairwise(cuts)):
        # Every other call on another instance, as behind a load balancer.
        target = store if call % 2 == 0 else backend.reopen(store)
        try:
            assert await target.append("up1", a, stream(*pieces(payload[a:b], 65_537))) == b
            assert (await target.get_info("up1")).offset == b
        finally:
            if target is not store:
                await close(target)
    info = await store.get_info("up1")
    assert info.is_complete and info.offset == len(payload)
    assert await read_all(store, "up1") == payload
    assert await read_all(store, "up1", PART - 10, PART + 10) == payload[PART - 10 : PART + 10]


async def test_stream_raising_midway_keeps_the_bytes_before(store: FullStore) -> None:
    payload = random.Random(2).randbytes(PART + 777)
    await new(store, size=None)
    await store.append("up1", 0, stream(b"x" * 10))
    with pytest.raises(Boom):
        await store.append("up1", 10, stream_then_raise(pieces(payload, 100_000)))
    assert (await store.get_info("up1")).offset == 10 + len(payload)
    await store.declare_length("up1", 10 + len(payload))
    assert await read_all(store, "up1") == b"x" * 10 + payload


async def test_cancelled_append_keeps_the_bytes_received(store: FullStore) -> None:
    await new(store, size=None)
    received = asyncio.Event()
    head = random.Random(3).randbytes(PART + 1000)

    async def stalls() -> AsyncIterator[bytes]:
        for piece in pieces(head, 100_000):
            yield piece
        received.set()
        await asyncio.sleep(60)
        yield b"never"

    task = asyncio.create_task(store.append("up1", 0, stalls()))
    await asyncio.wait_for(received.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert (await store.get_info("up1")).offset == len(head)
    await store.declare_length("up1", len(head))
    assert await read_all(store, "up1") == head


@pytest.mark.parametrize("size", [4000, PART + 4000])
async def test_refused_append_discards_that_calls_bytes(store: FullStore, size: int) -> None:
    await new(store, size=None)
    await store.append("up1", 0, stream(b"kept"))
    refused = pieces(b"z" * size, 1000)
    assert await store.append("up1", 4, stream(*refused), accept=lambda: False) == 4
    assert (await store.get_info("up1")).offset == 4
    assert await read_all(store, "up1") == b"kept"


async def test_raising_stream_with_accept_discards_and_never_asks(store: FullStore) -> None:
    await new(store, size=None)
    await store.append("up1", 0, stream(b"kept"))
    asked: list[bool] = []

    def accept() -> bool:
        asked.append(True)
        return True

    with pytest.raises(Boom):
        await store.append("up1", 4, stream_then_raise([b"q" * 3000] * 500), accept=accept)
    assert asked == []
    assert (await store.get_info("up1")).offset == 4
    assert await read_all(store, "up1") == b"kept"


async def test_accepted_append_keeps_bytes(store: FullStore) -> None:
    payload = random.Random(4).randbytes(PART + 99)
    await new(store, size=len(payload) + 6)
    assert await store.append("up1", 0, stream(b"abc", b"def"), accept=lambda: True) == 6
    assert await store.append("up1", 6, stream(*pieces(payload, 70_000)), accept=lambda: True) == 6 + len(payload)
    assert (await store.get_info("up1")).is_complete
    assert await read_all(store, "up1") == b"abcdef" + payload


async def test_head_of_an_unfinished_upload_is_readable(store: FullStore) -> None:
    await new(store, size=10_000)
    await store.append("up1", 0, stream(b"0123456789" * 100))
    assert await read_all(store, "up1", 0, 1000) == b"0123456789" * 100
    assert await read_all(store, "up1", 5, 25) == b"56789012345678901234"


async def test_deferred_length(store: FullStore) -> None:
    info = await new(store, size=None)
    assert info.size_is_deferred and not info.is_complete
    await store.append("up1", 0, stream(b"abc"))
    declared = await store.declare_length("up1", 5)
    assert (declared.size, declared.offset, declared.is_complete) == (5, 3, False)
    assert not (await store.get_info("up1")).size_is_deferred
    assert await store.append("up1", 3, stream(b"de")) == 5
    assert (await store.get_info("up1")).is_complete
    assert await read_all(store, "up1") == b"abcde"


async def test_declaring_the_length_already_stored_completes(store: FullStore) -> None:
    payload = random.Random(5).randbytes(PART + 3)
    await new(store, size=None)
    await store.append("up1", 0, stream(*pieces(payload, 1 << 16)))
    declared = await store.declare_length("up1", len(payload))
    assert declared.is_complete
    assert await read_all(store, "up1") == payload


@pytest.mark.parametrize("deferred", [False, True])
async def test_empty_upload(store: FullStore, deferred: bool) -> None:
    info = await new(store, size=None if deferred else 0)
    if deferred:
        assert not info.is_complete
        info = await store.declare_length("up1", 0)
    assert info.is_complete and info.offset == info.size == 0
    assert (await store.get_info("up1")).is_complete
    assert await store.append("up1", 0, stream()) == 0
    assert await read_all(store, "up1") == b""


async def test_modified_at_moves_with_appends(store: FullStore) -> None:
    created = await new(store, size=None)
    await asyncio.sleep(1.1)
    await store.append("up1", 0, stream(b"x"))
    assert (await store.get_info("up1")).modified_at > created.modified_at


async def test_read_byte_ranges(store: FullStore) -> None:
    payload = bytes(range(256)) * 10
    await new(store, size=len(payload))
    await store.append("up1", 0, stream(payload))
    assert await read_all(store, "up1", 0, len(payload)) == payload
    assert await read_all(store, "up1", 100, 200) == payload[100:200]
    assert await read_all(store, "up1", 2559, 2560) == payload[-1:]


async def test_read_crosses_read_blocks(store: FullStore) -> None:
    payload = os.urandom(2 * MiB + 123)
    await new(store, size=len(payload))
    await store.append("up1", 0, stream(payload))
    assert await read_all(store, "up1", 1000, len(payload) - 7) == payload[1000:-7]


async def test_concatenation(store: FullStore) -> None:
    rng = random.Random(6)
    # Empty, shorter than a part (and not last), longer than a part, short and last.
    parts = [b"", rng.randbytes(1000), rng.randbytes(PART + 5), rng.randbytes(3 * MiB), rng.randbytes(10)]
    ids = tuple(f"p{i}" for i in range(len(parts)))
    for upload_id, part in zip(ids, parts, strict=True):
        await new(store, upload_id, size=len(part), is_partial=True)
        await store.append(upload_id, 0, stream(*pieces(part, 1 << 20)))
    created = await new(store, "fin", size=None, is_final=True, partial_uploads=ids)
    assert created.is_final and not created.is_complete
    assert not (await store.get_info("fin")).size_is_deferred

    final = await store.concatenate("fin", ids)
    assert final.size == final.offset == sum(map(len, parts))
    assert final.is_complete and final.is_final and final.partial_uploads == ids
    assert await read_all(store, "fin") == b"".join(parts)
    assert (await store.get_info("fin")).is_complete
    for upload_id, part in zip(ids, parts, strict=True):
        assert await read_all(store, upload_id) == part


async def test_concatenation_of_empty_partials(store: FullStore) -> None:
    for upload_id in ("p0", "p1"):
        await new(store, upload_id, size=0, is_partial=True)
    await new(store, "fin", size=None, is_final=True, partial_uploads=("p0", "p1"))
    final = await store.concatenate("fin", ("p0", "p1"))
    assert final.is_complete and final.size == 0


async def test_concatenation_with_a_vanished_partial_is_not_found(store: FullStore) -> None:
    await new(store, "p0", size=1, is_partial=True)
    await store.append("p0", 0, stream(b"x"))
    await new(store, "fin", size=None, is_final=True, partial_uploads=("p0", "gone"))
    with pytest.raises(UploadNotFound):
        await store.concatenate("fin", ("p0", "gone"))
    assert (await store.get_info("fin")).offset == 0


async def test_waiting_finals(store: FullStore) -> None:
    await new(store, "p0", size=5, is_partial=True)
    await store.add_waiting_final("p0", "f1")
    await store.add_waiting_final("p0", "f2")
    await store.add_waiting_final("p0", "f1")
    assert sorted((await store.get_info("p0")).waiting_finals) == ["f1", "f2"]
    await store.append("p0", 0, stream(b"12345"))
    info = await store.get_info("p0")
    assert info.is_complete and sorted(info.waiting_finals) == ["f1", "f2"]


async def test_termination(store: FullStore) -> None:
    await new(store)
    await new(store, "other")
    await new(store, "done", size=3)
    await store.append("up1", 0, stream(b"data"))
    await store.append("done", 0, stream(b"abc"))
    await store.add_waiting_final("up1", "fin")
    for upload_id in ("up1", "done"):
        await store.terminate(upload_id)
        with pytest.raises(UploadNotFound):
            await store.get_info(upload_id)
        with pytest.raises(UploadNotFound):
            await store.terminate(upload_id)
        with pytest.raises(UploadNotFound):
            await read_all(store, upload_id, 0, 1)
    assert [i async for i in store.list_uploads()] == ["other"]
    # The id is free again.
    await new(store, "up1")
    assert (await store.get_info("up1")).offset == 0


async def test_list_uploads(store: FullStore) -> None:
    assert [i async for i in store.list_uploads()] == []
    for upload_id in ("a", "b", "c-_9"):
        await new(store, upload_id, size=None)
    await store.append("a", 0, stream(b"tail bytes"))
    await store.add_waiting_final("b", "c-_9")
    assert sorted([i async for i in store.list_uploads()]) == ["a", "b", "c-_9"]


async def test_another_instance_sees_the_same_uploads(backend: Backend, store: FullStore) -> None:
    await new(store, "a", size=None, metadata={"k": "v", "n": None})
    await new(store, "b", size=10, is_partial=True)
    await store.append("a", 0, stream(b"12345"))
    await store.declare_length("a", 7)
    await store.add_waiting_final("b", "fin")
    before = {i: await store.get_info(i) for i in ("a", "b")}

    other = backend.reopen(store)
    try:
        assert {i async for i in other.list_uploads()} == {"a", "b"}
        for upload_id, info in before.items():
            assert await other.get_info(upload_id) == info
        assert await other.append("a", 5, stream(b"67")) == 7
        assert (await other.get_info("a")).is_complete
        assert await read_all(other, "a") == b"1234567"
    finally:
        await close(other)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_random_chunking_reads_back_identical(backend: Backend, data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([0, 1, PART - 1, PART, PART + 1, 2 * PART + 4321]), label="size")
    payload = random.Random(size).randbytes(size)
    # Cut points split the payload into chunks; a subset of them also ends each append call.
    cuts = sorted(data.draw(st.sets(st.integers(0, size), max_size=30), label="cuts"))
    bounds = [0, *cuts, size]
    chunks = [payload[a:b] for a, b in pairwise(bounds)]
    ends = data.draw(st.sets(st.integers(1, len(chunks)), max_size=6), label="call ends")
    call_bounds = [0, *sorted(ends - {len(chunks)}), len(chunks)]

    async def run() -> bytes:
        store = backend.new_store()
        await new(store, size=size)
        offset = 0
        for a, b in pairwise(call_bounds):
            offset = await store.append("up1", offset, stream(*chunks[a:b]))
            # A fresh instance each call, as after a restart between PATCH requests.
            await close(store)
            store = backend.reopen(store)
        try:
            assert offset == size
            assert (await store.get_info("up1")).is_complete
            return await read_all(store, "up1")
        finally:
            await close(store)

    assert asyncio.run(run()) == payload
