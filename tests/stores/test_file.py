"""FileStore on disk: its data and info files, and what it makes of files it did not write.

What every store does (appends, reads, deferred length, concatenation, termination,
restarts) is checked on FileStore by test_contract.py; this module keeps to the files.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_contract import new, read_all, stream

from tusd_py.stores import FileStore, UploadNotFound

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "uploads")


def data_size(store: FileStore, upload_id: str) -> int:
    return (store.directory / upload_id).stat().st_size


async def test_create_writes_a_data_file_and_an_info_file(store: FileStore) -> None:
    await new(store)
    assert (store.directory / "up1.info").is_file()
    assert data_size(store, "up1") == 0


async def test_offset_is_the_data_file_size(store: FileStore) -> None:
    await new(store)
    await store.append("up1", 0, stream(b"hello", b" ", b"world"))
    assert (await store.get_info("up1")).offset == 11 == data_size(store, "up1")
    await store.append("up1", 11, stream(bytearray(b"!!"), memoryview(b"??")))
    assert (await store.get_info("up1")).offset == 15 == data_size(store, "up1")


@pytest.mark.parametrize("chunk_count", [1, 300])
async def test_refused_append_cuts_the_data_file_back(store: FileStore, chunk_count: int) -> None:
    await new(store, size=None)
    await store.append("up1", 0, stream(b"kept"))
    assert await store.append("up1", 4, stream(*[b"z" * 5000] * chunk_count), accept=lambda: False) == 4
    assert data_size(store, "up1") == 4


@pytest.mark.parametrize("upload_id", ["../uploads/up1", ".."])
async def test_ids_naming_paths_never_reach_a_file(store: FileStore, upload_id: str) -> None:
    await new(store)
    attempts = (
        lambda: store.get_info(upload_id),
        lambda: store.append(upload_id, 0, stream(b"x")),
        lambda: read_all(store, upload_id, 0, 1),
        lambda: store.terminate(upload_id),
        lambda: store.declare_length(upload_id, 1),
    )
    for attempt in attempts:
        with pytest.raises(UploadNotFound):
            await attempt()
    assert data_size(store, "up1") == 0
    assert (await store.get_info("up1")).size == 100


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


async def test_terminate_removes_every_file_of_the_upload(store: FileStore) -> None:
    await new(store)
    await store.append("up1", 0, stream(b"data"))
    await store.add_waiting_final("up1", "fin")
    await store.terminate("up1")
    assert os.listdir(store.directory) == []


async def test_read_ends_at_the_stored_bytes(store: FileStore) -> None:
    payload = bytes(range(256)) * 10
    await new(store, size=len(payload))
    await store.append("up1", 0, stream(payload))
    assert await read_all(store, "up1", 5, 5) == b""
    assert await read_all(store, "up1", 2500, 9999) == payload[2500:]


async def test_concatenation_leaves_only_the_uploads_files(store: FileStore) -> None:
    ids = ("p0", "p1")
    for upload_id in ids:
        await new(store, upload_id, size=3, is_partial=True)
        await store.append(upload_id, 0, stream(b"abc"))
    await new(store, "fin", size=None, is_final=True, partial_uploads=ids)
    await store.concatenate("fin", ids)
    assert data_size(store, "fin") == 6
    assert sorted(os.listdir(store.directory)) == ["fin", "fin.info", "p0", "p0.info", "p1", "p1.info"]


async def test_failed_concatenation_leaves_no_temporary_file(store: FileStore) -> None:
    await new(store, "p0", size=1, is_partial=True)
    await store.append("p0", 0, stream(b"x"))
    await new(store, "fin", size=None, is_final=True, partial_uploads=("p0", "gone"))
    with pytest.raises(UploadNotFound):
        await store.concatenate("fin", ("p0", "gone"))
    assert not (store.directory / "fin.concat").exists()
    assert data_size(store, "fin") == 0


async def test_list_uploads_lists_only_uploads(store: FileStore) -> None:
    for upload_id in ("a", "b", "c"):
        await new(store, upload_id)
    (store.directory / ".locks").mkdir()
    (store.directory / ".locks" / "a.lock").touch()
    (store.directory / "b.info.tmp").write_text("{}")
    assert sorted([i async for i in store.list_uploads()]) == ["a", "b", "c"]


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
