"""FileStore: bytes and info on disk, kept through failures and restarts."""

from __future__ import annotations

import asyncio
import os
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Iterable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tusd_py.stores import (
    Concater,
    FileStore,
    LengthDeferrer,
    Lister,
    NewUpload,
    Store,
    Terminater,
    UploadInfo,
    UploadNotFound,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "uploads")


class Boom(Exception):
    pass


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def stream_then_raise(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    raise Boom


async def read_all(store: FileStore, upload_id: str, start: int = 0, end: int | None = None) -> bytes:
    if end is None:
        end = (await store.get_info(upload_id)).offset
    return b"".join([block async for block in store.read(upload_id, start, end)])


async def new(store: FileStore, upload_id: str = "up1", size: int | None = 100, **kwargs: object) -> UploadInfo:
    return await store.create(NewUpload(upload_id, size, **kwargs))  # type: ignore[arg-type]


def data_size(store: FileStore, upload_id: str) -> int:
    return (store.directory / upload_id).stat().st_size


def test_offers_every_ability(store: FileStore) -> None:
    for ability in (Store, Terminater, LengthDeferrer, Concater, Lister):
        assert isinstance(store, ability)


async def test_create_and_get_info(store: FileStore) -> None:
    created = await new(store, metadata={"filename": "a.txt", "flag": None})
    assert created.offset == 0
    assert created.size == 100
    assert created.metadata == {"filename": "a.txt", "flag": None}
    assert not created.is_complete
    assert (store.directory / "up1").is_file()
    assert (store.directory / "up1.info").is_file()
    info = await store.get_info("up1")
    assert info.id == "up1"
    assert info.created_at == created.created_at
    assert info.storage["Type"] == "filestore"


async def test_create_refuses_an_existing_id(store: FileStore) -> None:
    await new(store)
    await store.append("up1", 0, stream(b"abc"))
    with pytest.raises(FileExistsError):
        await new(store)
    assert (await store.get_info("up1")).offset == 3


async def test_offset_is_the_data_file_size(store: FileStore) -> None:
    await new(store)
    assert await store.append("up1", 0, stream(b"hello", b" ", b"world")) == 11
    assert (await store.get_info("up1")).offset == 11 == data_size(store, "up1")
    assert await store.append("up1", 11, stream(bytearray(b"!!"), memoryview(b"??"))) == 15
    assert (await store.get_info("up1")).offset == 15 == data_size(store, "up1")
    assert await read_all(store, "up1") == b"hello world!!??"


async def test_empty_append_changes_nothing(store: FileStore) -> None:
    await new(store)
    assert await store.append("up1", 0, stream()) == 0
    assert (await store.get_info("up1")).offset == 0


async def test_stream_raising_midway_keeps_bytes_before_the_raise(store: FileStore) -> None:
    await new(store, size=None)
    await store.append("up1", 0, stream(b"x" * 10))
    # Enough chunks to cross a write batch, so both written and still-batched bytes are covered.
    chunks = [bytes([i % 256]) * 4099 for i in range(400)]
    with pytest.raises(Boom):
        await store.append("up1", 10, stream_then_raise(chunks))
    expected = b"x" * 10 + b"".join(chunks)
    assert (await store.get_info("up1")).offset == len(expected)
    assert await read_all(store, "up1") == expected


async def test_cancelled_append_keeps_received_bytes(store: FileStore) -> None:
    await new(store, size=None)
    received = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        yield b"b" * 1000
        received.set()
        await asyncio.sleep(60)
        yield b"never"

    task = asyncio.create_task(store.append("up1", 0, stalls()))
    await asyncio.wait_for(received.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert await read_all(store, "up1") == b"a" * 1000 + b"b" * 1000


@pytest.mark.parametrize("chunk_count", [1, 300])
async def test_refused_append_discards_that_calls_bytes(store: FileStore, chunk_count: int) -> None:
    await new(store, size=None)
    await store.append("up1", 0, stream(b"kept"))
    chunks = [b"z" * 5000] * chunk_count
    assert await store.append("up1", 4, stream(*chunks), accept=lambda: False) == 4
    assert (await store.get_info("up1")).offset == 4 == data_size(store, "up1")
    assert await read_all(store, "up1") == b"kept"


async def test_raising_stream_with_accept_discards_and_never_asks(store: FileStore) -> None:
    await new(store, size=None)
    await store.append("up1", 0, stream(b"kept"))
    asked: list[bool] = []

    def accept() -> bool:
        asked.append(True)
        return True

    with pytest.raises(Boom):
        await store.append("up1", 4, stream_then_raise([b"q" * 3000] * 500), accept=accept)
    assert asked == []
    assert await read_all(store, "up1") == b"kept"


async def test_accepted_append_keeps_bytes(store: FileStore) -> None:
    await new(store)
    assert await store.append("up1", 0, stream(b"abc", b"def"), accept=lambda: True) == 6
    assert await read_all(store, "up1") == b"abcdef"


async def test_restart_sees_the_same_uploads(store: FileStore) -> None:
    await new(store, "a", size=None, metadata={"k": "v"})
    await new(store, "b", size=10, is_partial=True)
    await store.append("a", 0, stream(b"12345"))
    await store.declare_length("a", 7)
    await store.add_waiting_final("b", "fin")
    before = {i: await store.get_info(i) for i in ("a", "b")}

    reopened = FileStore(store.directory)
    assert {i async for i in reopened.list_uploads()} == {"a", "b"}
    for upload_id, info in before.items():
        assert await reopened.get_info(upload_id) == info
    assert await reopened.append("a", 5, stream(b"67")) == 7
    assert (await reopened.get_info("a")).is_complete
    assert await read_all(reopened, "a") == b"1234567"


@pytest.mark.parametrize("upload_id", ["nope", "../uploads/up1", "up1.info", "", ".."])
async def test_unknown_or_malformed_ids_are_not_found(store: FileStore, upload_id: str) -> None:
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
    assert data_size(store, "up1") == 0


async def test_missing_info_file_is_not_found(store: FileStore) -> None:
    await new(store)
    (store.directory / "up1.info").unlink()
    with pytest.raises(UploadNotFound):
        await store.get_info("up1")


async def test_missing_data_file_is_not_found(store: FileStore) -> None:
    await new(store)
    (store.directory / "up1").unlink()
    with pytest.raises(UploadNotFound):
        await store.get_info("up1")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"not json",
        b'{"id": "up1", "size": ',  # cut short, as by a crash during a write
        b"\xff\xfe\x00garbage",
        b"{}",
        b"null",
        b"[1, 2]",
    ],
)
async def test_corrupt_info_file_is_not_found(store: FileStore, content: bytes) -> None:
    await new(store)
    (store.directory / "up1.info").write_bytes(content)
    with pytest.raises(UploadNotFound):
        await store.get_info("up1")


async def test_terminate_removes_both_files(store: FileStore) -> None:
    await new(store)
    await new(store, "other")
    await store.append("up1", 0, stream(b"data"))
    await store.terminate("up1")
    assert not (store.directory / "up1").exists()
    assert not (store.directory / "up1.info").exists()
    with pytest.raises(UploadNotFound):
        await store.get_info("up1")
    with pytest.raises(UploadNotFound):
        await store.terminate("up1")
    assert [i async for i in store.list_uploads()] == ["other"]


async def test_read_byte_ranges(store: FileStore) -> None:
    payload = bytes(range(256)) * 10
    await new(store, size=len(payload))
    await store.append("up1", 0, stream(payload))
    assert await read_all(store, "up1", 0, len(payload)) == payload
    assert await read_all(store, "up1", 100, 200) == payload[100:200]
    assert await read_all(store, "up1", 2559, 2560) == payload[-1:]
    assert await read_all(store, "up1", 5, 5) == b""
    # Past the stored bytes the read ends at what exists.
    assert await read_all(store, "up1", 2500, 9999) == payload[2500:]


async def test_read_crosses_read_blocks(store: FileStore) -> None:
    payload = os.urandom(2 * 1024 * 1024 + 123)
    await new(store, size=len(payload))
    await store.append("up1", 0, stream(payload))
    assert await read_all(store, "up1", 1000, len(payload) - 7) == payload[1000:-7]


async def test_declare_length(store: FileStore) -> None:
    info = await new(store, size=None)
    assert info.size_is_deferred
    await store.append("up1", 0, stream(b"abc"))
    declared = await store.declare_length("up1", 3)
    assert declared.size == 3
    info = await store.get_info("up1")
    assert not info.size_is_deferred
    assert info.is_complete


async def test_concatenation_of_three_partials(store: FileStore) -> None:
    parts = [os.urandom(1000), b"", os.urandom(70_000)]
    ids = ("p0", "p1", "p2")
    for upload_id, part in zip(ids, parts, strict=True):
        await new(store, upload_id, size=len(part), is_partial=True)
        await store.append(upload_id, 0, stream(part))
    await new(store, "fin", size=None, is_final=True, partial_uploads=ids)
    assert not (await store.get_info("fin")).size_is_deferred

    final = await store.concatenate("fin", ids)
    assert final.size == final.offset == sum(map(len, parts))
    assert final.is_complete and final.is_final
    assert final.partial_uploads == ids
    assert await read_all(store, "fin") == b"".join(parts)
    # The partials are left as they were.
    for upload_id, part in zip(ids, parts, strict=True):
        assert await read_all(store, upload_id) == part
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(
        [*ids, *(f"{i}.info" for i in ids), "fin", "fin.info"]
    )


async def test_concatenation_with_a_vanished_partial_is_not_found(store: FileStore) -> None:
    await new(store, "p0", size=1, is_partial=True)
    await store.append("p0", 0, stream(b"x"))
    await new(store, "fin", size=None, is_final=True, partial_uploads=("p0", "gone"))
    with pytest.raises(UploadNotFound):
        await store.concatenate("fin", ("p0", "gone"))
    assert not (store.directory / "fin.concat").exists()
    assert (await store.get_info("fin")).offset == 0


async def test_add_waiting_final_is_idempotent(store: FileStore) -> None:
    await new(store, "p0", size=5, is_partial=True)
    await store.add_waiting_final("p0", "f1")
    await store.add_waiting_final("p0", "f2")
    await store.add_waiting_final("p0", "f1")
    assert (await store.get_info("p0")).waiting_finals == ("f1", "f2")


async def test_list_uploads_lists_only_uploads(store: FileStore) -> None:
    for upload_id in ("a", "b", "c"):
        await new(store, upload_id)
    (store.directory / ".locks").mkdir()
    (store.directory / ".locks" / "a.lock").touch()
    (store.directory / "b.info.tmp").write_text("{}")
    assert sorted([i async for i in store.list_uploads()]) == ["a", "b", "c"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_chunking_reads_back_identical(data: st.DataObject) -> None:
    payload = data.draw(st.binary(max_size=300_000), label="payload")
    # Cut points split the payload into chunks; a subset of them also ends each append call.
    cuts = sorted(data.draw(st.sets(st.integers(0, len(payload)), max_size=40), label="cuts"))
    bounds = [0, *cuts, len(payload)]
    chunks = [payload[a:b] for a, b in pairwise(bounds)]
    ends = data.draw(st.sets(st.integers(1, len(chunks)), max_size=10), label="call ends")
    call_bounds = [0, *sorted(ends - {len(chunks)}), len(chunks)]

    async def run(directory: str) -> bytes:
        store = FileStore(directory)
        await new(store, size=len(payload))
        offset = 0
        for a, b in pairwise(call_bounds):
            offset = await store.append("up1", offset, stream(*chunks[a:b]))
            # A fresh instance each call, as after a restart between PATCH requests.
            store = FileStore(directory)
        assert offset == len(payload)
        assert (await store.get_info("up1")).is_complete
        return await read_all(store, "up1")

    with tempfile.TemporaryDirectory() as directory:
        assert asyncio.run(run(directory)) == payload


async def test_append_memory_is_bounded(store: FileStore) -> None:
    block = b"\xab" * (64 * 1024)
    total = 200 * 1024 * 1024

    async def same_block() -> AsyncIterator[bytes]:
        for _ in range(total // len(block)):
            yield block

    await new(store, size=total)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        offset = await store.append("up1", 0, same_block())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offset == total == data_size(store, "up1")
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    with open(store.directory / "up1", "rb") as f:
        f.seek(total - len(block))
        assert f.read() == block
