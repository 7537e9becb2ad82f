"""S3Store: parts, tail objects, crash safety, part sizing and error tolerance.

What every store does is in test_contract.py. These tests look at the objects the store
leaves in a real S3 server (Ceph's gateway, see services/ceph_rgw.py), and break its
calls at chosen points to see that the offset stays right.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.app import create_app
from tusd_py.expiry import ExpirySweeper
from tusd_py.locks import MemoryLocker
from tusd_py.stores import NewUpload, S3Store, S3Unavailable, UploadNotFound
from tusd_py.stores.s3_bucket import Bucket, is_not_found
from tusd_py.stores.s3_budget import MemoryBudget
from tusd_py.stores.s3_layout import (
    GROW_EVERY,
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    Extent,
    Layout,
    choose_layout,
    plan_concatenation,
    stored_extent,
)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = MIN_PART
TiB = 1024 * 1024 * MiB


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def s3_bucket(ceph_s3: Any) -> str:
    return str(ceph_s3.new_bucket("s3store"))


@pytest.fixture(scope="session")
def shared_session() -> AioSession:
    # Loaded once: botocore's service models take a third of a second per session.
    return AioSession()


StoreFactory = Callable[..., S3Store]


@pytest.fixture
async def make_store(
    ceph_s3: Any, s3_bucket: str, shared_session: AioSession, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StoreFactory]:
    """Stores over one fresh prefix: several of them are several instances of one server."""
    for name, value in ceph_s3.env().items():
        monkeypatch.setenv(name, value)
    prefix = uuid.uuid4().hex
    made: list[S3Store] = []

    def make(**options: Any) -> S3Store:
        settings: dict[str, Any] = {
            "prefix": prefix,
            "endpoint_url": ceph_s3.endpoint,
            "region": ceph_s3.region,
            "part_size": PART,
            "path_style": True,
            "session": shared_session,
        }
        settings.update(options)
        store = S3Store(s3_bucket, **settings)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


@pytest.fixture
def store(make_store: StoreFactory) -> S3Store:
    return make_store(max_in_flight=2, memory_budget=4 * PART)


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


def pieces(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


async def read_all(store: S3Store, upload_id: str) -> bytes:
    end = (await store.get_info(upload_id)).offset
    return b"".join([block async for block in store.read(upload_id, 0, end)])


async def keys(store: S3Store) -> list[str]:
    return sorted([key[len(store.prefix) :] async for key, _ in store.bucket.keys(store.prefix)])


async def multiparts(store: S3Store) -> list[str]:
    return [key[len(store.prefix) :] async for key, _, _ in store.bucket.multipart_uploads(store.prefix)]


async def record(store: S3Store, upload_id: str) -> dict[str, Any]:
    found = await store.bucket.get(store.prefix + upload_id + ".info")
    assert found is not None
    loaded: dict[str, Any] = json.loads(found[0])
    return loaded


async def stored_parts(store: S3Store, upload_id: str) -> dict[int, int]:
    multipart = (await record(store, upload_id))["multipart_upload"]
    parts = await store.bucket.parts(store.prefix + upload_id, multipart)
    assert parts is not None
    return {number: part.size for number, part in parts.items()}


# -- layout: pure -------------------------------------------------------------------------


@given(st.integers(1, 20), st.integers(0, 5), st.integers(1, 60))
def test_layout_parts_follow_each_other(base_mib: int, grow: int, number: int) -> None:
    layout = Layout(base_mib * MiB, grow)
    assert layout.start_of(1) == 0
    assert layout.start_of(number + 1) == layout.start_of(number) + layout.size_of(number)
    assert layout.base <= layout.size_of(number) <= layout.size_of(number + 1)
    assert layout.size_of(number) <= MAX_PART


@given(st.integers(0, 5 * TiB), st.integers(5, 64))
def test_known_sizes_fit_in_ten_thousand_parts(size: int, part_mib: int) -> None:
    layout = choose_layout(size, part_mib * MiB)
    assert layout.grow_every == 0
    assert layout.base >= part_mib * MiB and layout.base % MiB == 0
    assert layout.base <= MAX_PART
    assert layout.base * MAX_PARTS >= size
    # Raised only as far as needed.
    assert layout.base == part_mib * MiB or (layout.base - MiB) * MAX_PARTS < size


def test_part_size_is_raised_for_big_uploads() -> None:
    assert choose_layout(10 * 1024 * MiB, 8 * MiB) == Layout(8 * MiB)
    assert choose_layout(100 * 1024 * MiB, 8 * MiB) == Layout(11 * MiB)
    assert choose_layout(5 * TiB, 8 * MiB) == Layout(525 * MiB)


def test_unknown_sizes_grow_to_reach_five_tebibytes() -> None:
    layout = choose_layout(None, 8 * MiB)
    assert layout == Layout(8 * MiB, GROW_EVERY)
    assert [layout.size_of(n) // MiB for n in (1, 1000, 1001, 2001, 10_000)] == [8, 8, 16, 32, 4096]
    assert layout.start_of(MAX_PARTS + 1) >= 5 * TiB
    # Even from the smallest parts, nearly as far.
    assert choose_layout(None, MIN_PART).start_of(MAX_PARTS + 1) >= 4.8 * TiB


def test_length_of_stops_at_the_size() -> None:
    layout = Layout(10)
    assert [layout.length_of(n, 25) for n in (1, 2, 3, 4)] == [10, 10, 5, 0]
    assert layout.length_of(4, None) == 10


def test_stored_extent() -> None:
    layout = Layout(10)
    # Parts count while they follow each other; the tail counts where it begins the next.
    assert stored_extent(layout, {}, None, 0) == Extent(0, 1, False, False)
    assert stored_extent(layout, {}, 1, 4).offset == 4
    assert stored_extent(layout, {1: 10, 2: 10}, 3, 4) == Extent(24, 3, True, False)
    # A stale tail (its part is stored) is not counted twice.
    assert stored_extent(layout, {1: 10, 2: 10}, 2, 4) == Extent(20, 3, False, False)
    # A part beyond a gap does not count until the gap is filled; the tail still does.
    assert stored_extent(layout, {1: 10, 3: 10}, 2, 4) == Extent(14, 2, True, False)
    assert stored_extent(layout, {1: 10, 2: 10, 3: 10}, 2, 4).offset == 30
    # A short part is the last one: nothing after it counts.
    assert stored_extent(layout, {1: 10, 2: 3, 3: 10}, 3, 4) == Extent(13, 3, False, True)


@given(st.lists(st.integers(0, 40), max_size=12), st.integers(1, 10), st.integers(2, 4))
def test_concatenation_plan(sizes: list[int], min_part: int, copy_factor: int) -> None:
    max_copy = min_part * copy_factor
    plan = plan_concatenation(sizes, min_part, max_copy)
    # The pieces put every source end to end, in order, once.
    pieces_in_order = [piece for part in plan for piece in part.pieces]
    expected = [(source, position) for source, size in enumerate(sizes) for position in range(size)]
    covered = [(p.source, position) for p in pieces_in_order for position in range(p.start, p.end)]
    assert covered == expected
    assert all(piece.end > piece.start for piece in pieces_in_order)
    for index, part in enumerate(plan):
        if index < len(plan) - 1:
            assert part.size >= min_part
        if part.copied:
            assert part.size <= max_copy
        else:
            # Downloaded parts are gathered from short sources: never more than a minimum part.
            assert part.size <= min_part


# -- memory budget ------------------------------------------------------------------------


async def test_budget_waits_and_serves_in_order() -> None:
    budget = MemoryBudget(10)
    assert await budget.reserve(6) == 6
    order: list[str] = []

    async def take(name: str, amount: int) -> None:
        await budget.reserve(amount)
        order.append(name)

    big = asyncio.create_task(take("big", 8))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 1))
    await asyncio.sleep(0.01)
    # 4 bytes are free, but the small reservation queues behind the big one.
    assert order == [] and budget.free == 4
    budget.release(6)
    await asyncio.wait_for(asyncio.gather(big, small), 1)
    assert order == ["big", "small"] and budget.free == 1


async def test_budget_gives_an_oversized_part_everything() -> None:
    budget = MemoryBudget(10)
    assert await budget.reserve(50) == 10
    assert budget.free == 0
    budget.release(10)
    assert budget.free == 10


async def test_cancelled_reservation_leaves_the_budget_whole() -> None:
    budget = MemoryBudget(10)
    await budget.reserve(10)
    waiting = asyncio.create_task(budget.reserve(5))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    budget.release(10)
    assert budget.free == 10
    assert await asyncio.wait_for(budget.reserve(10), 1) == 10


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryBudget(0)


# -- construction and configuration -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"part_size": PART - 1}, "part_size"),
        ({"part_size": MAX_PART + 1, "memory_budget": 2 * MAX_PART}, "part_size"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"memory_budget": PART, "part_size": PART + 1}, "memory_budget"),
    ],
)
def test_refuses_bad_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3Store("bucket", **options)


async def test_construction_does_no_io() -> None:
    # Nothing listens on port 9: only a call would find out.
    store = S3Store("bucket", prefix="uploads", endpoint_url="http://127.0.0.1:9")
    assert store.prefix == "uploads/"
    await store.aclose()


@pytest.mark.parametrize(
    ("path_style", "url"), [(True, "s3.example.test:9000/bkt/k"), (False, "bkt.s3.example.test:9000/k")]
)
async def test_addressing_style_and_region_reach_botocore(
    monkeypatch: pytest.MonkeyPatch, path_style: bool, url: str
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    store = S3Store("bkt", endpoint_url="http://s3.example.test:9000", region="eu-west-3", path_style=path_style)
    try:
        client = await store.bucket.client()
        # Presigning needs no network, and shows where requests would go.
        presigned = urlsplit(await client.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "k"}))
        assert presigned.netloc + presigned.path == url
        assert "%2Feu-west-3%2Fs3%2F" in presigned.query
    finally:
        await store.aclose()


# -- objects in S3 ------------------------------------------------------------------------


async def test_short_appends_live_in_the_tail_object(store: S3Store) -> None:
    payload = random.Random(1).randbytes(2 * PART + 10)
    await store.create(NewUpload("up1", len(payload), {"name": "x"}))
    assert await keys(store) == ["up1.info"]
    assert await multiparts(store) == ["up1"]

    await store.append("up1", 0, stream(payload[:3000]))
    tail = await store.bucket.head(store.prefix + "up1.part")
    assert tail is not None and (tail.size, dict(tail.metadata)) == (3000, {"part": "1"})
    assert await stored_parts(store, "up1") == {}

    # The next append takes the tail back, fills part 1 and part 2, and leaves a new tail.
    assert await store.append("up1", 3000, stream(*pieces(payload[3000 : 2 * PART + 4]))) == 2 * PART + 4
    assert await stored_parts(store, "up1") == {1: PART, 2: PART}
    tail = await store.bucket.head(store.prefix + "up1.part")
    assert tail is not None and (tail.size, dict(tail.metadata)) == (4, {"part": "3"})

    # Ending exactly on a part boundary leaves no tail.
    await store.terminate("up1")
    await store.create(NewUpload("up1", len(payload)))
    await store.append("up1", 0, stream(*pieces(payload[:PART])))
    assert await keys(store) == ["up1.info"]

    await store.append("up1", PART, stream(*pieces(payload[PART:])))
    # Complete: one object, the info says so, no multipart upload is left.
    assert await keys(store) == ["up1", "up1.info"]
    assert await multiparts(store) == []
    assert (await record(store, "up1"))["completed"] is True
    info = await store.get_info("up1")
    assert info.is_complete and info.storage == {
        "Type": "s3store",
        "Bucket": store.bucket.name,
        "Key": store.prefix + "up1",
    }
    assert await read_all(store, "up1") == payload


async def test_info_object_records_the_layout(store: S3Store) -> None:
    await store.create(NewUpload("big", 100 * 1024 * MiB))
    await store.create(NewUpload("deferred", None, protocol="draft"))
    assert (await record(store, "big"))["part_size"] == 11 * MiB
    deferred = await record(store, "deferred")
    assert (deferred["part_size"], deferred["part_growth"], deferred["protocol"]) == (PART, GROW_EVERY, "draft")


async def test_listing_turns_pages(store: S3Store) -> None:
    store.bucket.page_size = 2
    for upload_id in ("a", "b", "c", "d", "e"):
        await store.create(NewUpload(upload_id, None))
    assert sorted([i async for i in store.list_uploads()]) == ["a", "b", "c", "d", "e"]
    assert len(await multiparts(store)) == 5
    payload = random.Random(2).randbytes(3 * PART + 1)
    await store.append("a", 0, stream(*pieces(payload)))
    # ListParts over two pages: parts 1-2, then 3.
    assert (await store.get_info("a")).offset == len(payload)


async def test_offset_mismatch_is_refused(store: S3Store) -> None:
    await store.create(NewUpload("up1", 100))
    await store.append("up1", 0, stream(b"abc"))
    with pytest.raises(S3Unavailable, match="offset 3"):
        await store.append("up1", 2, stream(b"x"))
    assert (await store.get_info("up1")).offset == 3


async def test_parts_of_an_unfinished_upload_are_not_readable(store: S3Store) -> None:
    payload = random.Random(3).randbytes(PART + 10)
    await store.create(NewUpload("up1", 2 * PART))
    await store.append("up1", 0, stream(*pieces(payload)))
    with pytest.raises(S3Unavailable, match="not readable yet"):
        _ = [b async for b in store.read("up1", 0, 10)]
    # The tail is.
    assert b"".join([b async for b in store.read("up1", PART, PART + 10)]) == payload[PART:]


# -- memory -------------------------------------------------------------------------------


async def test_append_memory_is_bounded_by_the_budget(make_store: StoreFactory) -> None:
    store = make_store(max_in_flight=2, memory_budget=2 * PART)
    block = random.Random(4).randbytes(64 * 1024)
    total = 5 * PART

    async def same_block() -> AsyncIterator[bytes]:
        for _ in range(total // len(block)):
            yield block

    await store.create(NewUpload("up1", total))
    tracemalloc.start()
    try:
        offset = await store.append("up1", 0, same_block())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offset == total
    # Two part buffers, and the slices the HTTP client sends.
    assert peak < 3 * PART, f"peak {peak / MiB:.1f} MiB"
    assert store.budget.free == store.budget.total
    assert await read_all(store, "up1") == block * (total // len(block))


async def test_uploads_share_the_budget_without_deadlock(make_store: StoreFactory) -> None:
    store = make_store(max_in_flight=2, memory_budget=PART)
    payloads = {f"u{i}": random.Random(i).randbytes(PART + 1000 * i) for i in range(3)}
    for upload_id, payload in payloads.items():
        await store.create(NewUpload(upload_id, len(payload)))
    appends = [store.append(upload_id, 0, stream(*pieces(p, 100_000))) for upload_id, p in payloads.items()]
    assert await asyncio.wait_for(asyncio.gather(*appends), 60) == [len(p) for p in payloads.values()]
    assert store.budget.free == store.budget.total
    for upload_id, payload in payloads.items():
        assert await read_all(store, upload_id) == payload


# -- crash safety -------------------------------------------------------------------------

_CALLS = ("head", "get", "put", "delete", "parts", "upload_part", "complete", "abort", "start_multipart")


class Dies:
    """Makes a store's S3 calls fail from the `at`-th on, as if its process had died there
    (or only the `at`-th, as if S3 had refused that one request)."""

    def __init__(self, store: S3Store, monkeypatch: pytest.MonkeyPatch, at: int, only: bool = False) -> None:
        self.at = at
        self.only = only
        self.calls: list[str] = []
        for name in _CALLS:
            monkeypatch.setattr(store.bucket, name, self._wrap(name, getattr(store.bucket, name)))

    def _wrap(self, name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapped(*args: Any) -> Any:
            self.calls.append(name)
            if len(self.calls) == self.at or (len(self.calls) > self.at and not self.only):
                raise S3Unavailable(f"died before {name}")
            return await call(*args)

        return wrapped


async def test_a_stale_tail_is_not_counted_twice(make_store: StoreFactory) -> None:
    store = make_store()
    payload = random.Random(5).randbytes(2 * PART)
    await store.create(NewUpload("up1", len(payload)))
    await store.append("up1", 0, stream(payload[: 3 * MiB]))
    # An append stored part 1 (the tail's bytes and more), then died before the tail went.
    multipart = (await record(store, "up1"))["multipart_upload"]
    await store.bucket.upload_part(store.prefix + "up1", multipart, 1, payload[:PART])
    assert await store.bucket.head(store.prefix + "up1.part") is not None
    other = make_store()
    assert (await other.get_info("up1")).offset == PART
    assert await other.append("up1", PART, stream(*pieces(payload[PART:]))) == len(payload)
    assert await read_all(other, "up1") == payload
    assert await keys(other) == ["up1", "up1.info"]


async def test_a_part_beyond_a_gap_counts_once_the_gap_is_filled(make_store: StoreFactory) -> None:
    store = make_store()
    payload = random.Random(6).randbytes(3 * PART + 7)
    await store.create(NewUpload("up1", len(payload)))
    # Parts 2 and 3 were in flight together; part 3 was stored, then the process died.
    await store.append("up1", 0, stream(*pieces(payload[:PART])))
    multipart = (await record(store, "up1"))["multipart_upload"]
    await store.bucket.upload_part(store.prefix + "up1", multipart, 3, payload[2 * PART : 3 * PART])
    assert (await store.get_info("up1")).offset == PART
    # A short append keeps its bytes in the tail; part 3 still waits.
    assert await store.append("up1", PART, stream(payload[PART : PART + 100])) == PART + 100
    # Filling part 2 joins part 3: the offset moves past both.
    assert await store.append("up1", PART + 100, stream(*pieces(payload[PART + 100 : 2 * PART]))) == 3 * PART
    assert await store.append("up1", 3 * PART, stream(payload[3 * PART :])) == len(payload)
    assert await read_all(store, "up1") == payload


async def _calls_of_a_clean_run(make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, payload: bytes) -> int:
    store = make_store(prefix=uuid.uuid4().hex, max_in_flight=2)
    await store.create(NewUpload("up1", len(payload)))
    await store.append("up1", 0, stream(payload[: 3 * MiB]))
    with monkeypatch.context() as patch:
        counter = Dies(store, patch, at=10**9)
        await store.append("up1", 3 * MiB, stream(*pieces(payload[3 * MiB :])))
    return len(counter.calls)


@pytest.mark.parametrize("only", [False, True], ids=["dies", "one-call-fails"])
async def test_failing_at_any_call_keeps_the_offset_right(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch, only: bool
) -> None:
    payload = random.Random(7).randbytes(PART + 1000)
    total_calls = await _calls_of_a_clean_run(make_store, monkeypatch, payload)
    assert total_calls >= 8

    async def dies_at(at: int) -> int:
        store = make_store(prefix=uuid.uuid4().hex, max_in_flight=2)
        await store.create(NewUpload("up1", len(payload)))
        await store.append("up1", 0, stream(payload[: 3 * MiB]))
        with monkeypatch.context() as patch:
            Dies(store, patch, at, only)
            with pytest.raises(S3Unavailable):
                await store.append("up1", 3 * MiB, stream(*pieces(payload[3 * MiB :])))
        # Another instance takes over: what it reports is stored, and the rest completes it.
        other = make_store(prefix=store.prefix)
        offset = (await other.get_info("up1")).offset
        assert await other.append("up1", offset, stream(*pieces(payload[offset:]))) == len(payload)
        assert await read_all(other, "up1") == payload, f"died at call {at}"
        assert await multiparts(other) == []
        return offset

    # Every crash point at once: each one is its own upload.
    offsets = await asyncio.gather(*(dies_at(at) for at in range(1, total_calls + 1)))
    assert offsets[0] == 3 * MiB and offsets[-1] == len(payload)
    if not only:
        # Dying later never keeps less.
        assert offsets == sorted(offsets)


async def test_dying_before_completion_is_repaired_by_the_next_look(
    store: S3Store, make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = random.Random(8).randbytes(PART + 5)
    await store.create(NewUpload("up1", len(payload)))
    with monkeypatch.context() as patch:
        dies = Dies(store, patch, at=10**9)

        async def dies_at_complete(*args: Any) -> None:
            raise S3Unavailable("died before complete")

        patch.setattr(store.bucket, "complete", dies_at_complete)
        with pytest.raises(S3Unavailable):
            await store.append("up1", 0, stream(*pieces(payload)))
        assert "upload_part" in dies.calls
    assert await multiparts(store) == ["up1"]
    other = make_store()
    info = await other.get_info("up1")
    assert info.is_complete
    assert await multiparts(other) == []
    assert await read_all(other, "up1") == payload


async def test_abandoned_multipart_uploads_and_objects_are_swept(store: S3Store) -> None:
    await store.create(NewUpload("live", None))
    await store.append("live", 0, stream(b"kept"))
    await store.create(NewUpload("done", 3))
    await store.append("done", 0, stream(b"abc"))
    await store.create(NewUpload("half", None))
    await store.append("half", 0, stream(b"tail"))
    # A termination that died after removing the info object...
    await store.bucket.delete(store.prefix + "half.info")
    # ...a creation that died before writing it, and a concatenation that died midway.
    await store.bucket.start_multipart(store.prefix + "orphan")
    await store.create(NewUpload("fin", None, is_final=True, partial_uploads=("live",)))
    await store.bucket.start_multipart(store.prefix + "fin")
    # A bucket lifecycle rule aborted this one's multipart upload: its bytes are gone.
    await store.create(NewUpload("lost", None))
    await store.append("lost", 0, stream(b"tail"))
    await store.bucket.abort(store.prefix + "lost", (await record(store, "lost"))["multipart_upload"])

    assert await store.abort_abandoned(older_than=3600) == 0
    assert sorted(await multiparts(store)) == ["fin", "half", "live", "orphan"]
    # Three multipart uploads; the tails of "half" and "lost", and the info of "lost".
    assert await store.abort_abandoned(older_than=0) == 6
    assert await multiparts(store) == ["live"]
    assert await keys(store) == ["done", "done.info", "fin.info", "live.info", "live.part"]
    assert await read_all(store, "live") == b"kept"
    assert await read_all(store, "done") == b"abc"
    assert (await store.get_info("fin")).offset == 0
    assert await store.abort_abandoned(older_than=0) == 0


async def test_the_expiry_sweep_removes_idle_uploads_and_abandoned_multipart_uploads(store: S3Store) -> None:
    await store.create(NewUpload("idle", 10 * PART))
    await store.append("idle", 0, stream(*pieces(random.randbytes(PART + 10))))
    await store.create(NewUpload("done", 3))
    await store.append("done", 0, stream(b"abc"))
    # An instance died between starting the multipart upload and writing the info object.
    await store.bucket.start_multipart(store.prefix + "orphan")
    sweeper = ExpirySweeper(store, MemoryLocker(timeout=1), expire_after=0.5)
    assert await sweeper.sweep() == []
    assert sorted(await multiparts(store)) == ["idle", "orphan"]
    await asyncio.sleep(1.0)
    assert await sweeper.sweep() == ["idle"]
    assert await multiparts(store) == []
    assert await keys(store) == ["done", "done.info"]


# -- error tolerance ----------------------------------------------------------------------


def _error(code: str, status: int) -> ClientError:
    reply: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(reply, "Op")


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchUpload", 404, True),
        ("NoSuchKey", 404, True),
        ("NotFound", 404, True),
        ("404", 404, True),
        ("Weird", 404, True),
        ("NoSuchUpload", 400, True),
        ("NoSuchBucket", 404, False),
        ("AccessDenied", 403, False),
        ("SlowDown", 503, False),
    ],
)
def test_not_found_in_any_spelling(code: str, status: int, expected: bool) -> None:
    assert is_not_found(_error(code, status)) is expected


async def test_an_aborted_multipart_upload_is_not_found(store: S3Store) -> None:
    await store.create(NewUpload("up1", 100))
    multipart = (await record(store, "up1"))["multipart_upload"]
    await store.bucket.abort(store.prefix + "up1", multipart)
    # Ceph says NoSuchKey here, AWS NoSuchUpload: both mean gone.
    assert await store.bucket.parts(store.prefix + "up1", multipart) is None
    with pytest.raises(UploadNotFound):
        await store.get_info("up1")
    # And aborting twice is no error.
    await store.bucket.abort(store.prefix + "up1", multipart)


async def test_a_missing_bucket_is_unavailable_not_not_found(make_store: StoreFactory) -> None:
    store = make_store()
    store.bucket.name = "no-such-bucket-" + uuid.uuid4().hex[:8]
    with pytest.raises(S3Unavailable, match="NoSuchBucket"):
        await store.get_info("up1")
    with pytest.raises(S3Unavailable):
        await store.create(NewUpload("up1", 10))


async def test_a_refused_connection_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    bucket = Bucket("bkt", endpoint_url="http://127.0.0.1:9", region="us-east-1", path_style=True, max_connections=2)
    bucket.config = bucket.config.merge(type(bucket.config)(retries={"total_max_attempts": 1}))
    try:
        with pytest.raises(S3Unavailable, match="could not"):
            await bucket.head("k")
    finally:
        await bucket.aclose()


# -- behind the tus handler ---------------------------------------------------------------


async def test_tus_requests_over_s3(store: S3Store, tmp_path: Path) -> None:
    payload = random.Random(9).randbytes(PART + 4321)
    app = create_app(tmp_path, store=store, expire_after=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tus.test") as client:
        tus = {"Tus-Resumable": "1.0.0"}
        patch = {**tus, "Content-Type": "application/offset+octet-stream"}
        created = await client.post(
            "/", headers={**tus, "Upload-Length": str(len(payload)), "Upload-Metadata": "filename YS50eHQ="}
        )
        assert created.status_code == 201
        url = created.headers["Location"]
        first = await client.patch(url, headers={**patch, "Upload-Offset": "0"}, content=payload[:1000])
        assert (first.status_code, first.headers["Upload-Offset"]) == (204, "1000")
        # A checksum that does not match: 460, nothing kept.
        bad = await client.patch(
            url,
            headers={**patch, "Upload-Offset": "1000", "Upload-Checksum": "sha1 " + "A" * 27 + "="},
            content=payload[1000:2000],
        )
        assert bad.status_code == 460
        assert (await client.head(url, headers=tus)).headers["Upload-Offset"] == "1000"
        digest = base64.b64encode(hashlib.sha1(payload[1000:]).digest()).decode()
        rest = await client.patch(
            url, headers={**patch, "Upload-Offset": "1000", "Upload-Checksum": "sha1 " + digest}, content=payload[1000:]
        )
        assert (rest.status_code, rest.headers["Upload-Offset"]) == (204, str(len(payload)))
        got = await client.get(url, headers={"Range": "bytes=5-5000004"})
        assert (got.status_code, got.content) == (206, payload[5:5000005])
        assert (await client.get(url)).content == payload
        assert (await client.delete(url, headers=tus)).status_code == 204
        assert (await client.head(url, headers=tus)).status_code == 404
    assert await keys(store) == []


async def test_an_unreachable_bucket_is_answered_503(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    store.bucket.name = "no-such-bucket-" + uuid.uuid4().hex[:8]
    app = create_app(tmp_path, store=store, expire_after=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tus.test") as client:
        tus = {"Tus-Resumable": "1.0.0"}
        assert (await client.post("/", headers={**tus, "Upload-Length": "10"})).status_code == 503
        assert (await client.head("/abc", headers=tus)).status_code == 503
