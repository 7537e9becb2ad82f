"""One request per upload at a time, over real connections to `tusd-py serve`.

Requests are written on raw asyncio streams so a test can send part of a body, stall,
and read the answer while it is still sending. With `--workers 2` each connection is
traced to the worker process that accepted it, so the cross-process path (FileLocker
and its release marker) is known to be the one exercised.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import psutil
import pytest

if TYPE_CHECKING:
    from tests.conftest import RunningServer

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024
KiB = 1024
# How long a stalled client waits before the newer request, so the server has surely
# taken every sent byte off the socket (bytes still in uvicorn's buffer would not count).
SETTLE = 1.0

ServerFactory = Callable[..., "RunningServer"]
# Locks are the same whatever the store: S3 runs the one case where the store's part shows,
# keeping the bytes of a PATCH that was ended. Concurrent PATCHes on S3 are the
# multi-instance tests' subject.
ON_FILES = [("file", 1), ("file", 2)]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker: int

    def close(self) -> None:
        self.writer.close()


def create_upload(server: RunningServer, length: int) -> str:
    response = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    return response.headers["location"]


def patch_headers(url: str, offset: int, content_length: int) -> bytes:
    parsed = httpx.URL(url)
    return (
        f"PATCH {parsed.raw_path.decode()} HTTP/1.1\r\n"
        f"Host: {parsed.host}:{parsed.port}\r\n"
        "Tus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def head_request(url: str) -> bytes:
    parsed = httpx.URL(url)
    return (
        f"HEAD {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\nTus-Resumable: 1.0.0\r\n\r\n"
    ).encode()


async def read_reply(reader: asyncio.StreamReader, *, has_body: bool = True) -> Reply | None:
    """The next response on the stream, or None if the server closed without one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if has_body and int(headers.get("content-length", "0")):
        body = await reader.readexactly(int(headers["content-length"]))
    return Reply(int(status_line.split()[1]), headers, body)


def worker_pids(server: RunningServer) -> list[int]:
    process = psutil.Process(server.process.pid)
    return [process.pid, *(child.pid for child in process.children(recursive=True))]


def accepting_worker(server: RunningServer, local_port: int, timeout: float = 5.0) -> int:
    """The pid of the server process that accepted our connection from `local_port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in worker_pids(server):
            try:
                connections = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.raddr and c.raddr.port == local_port and c.laddr.port == server.port for c in connections):
                return pid
        time.sleep(0.02)
    raise TimeoutError(f"no server process accepted the connection from port {local_port}")


async def connect(server: RunningServer) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    local_port = writer.get_extra_info("sockname")[1]
    worker = await asyncio.to_thread(accepting_worker, server, local_port)
    return Conn(reader, writer, worker)


async def connections_on_distinct_workers(server: RunningServer, count: int = 2, tries: int = 24) -> list[Conn]:
    """`count` connections, each accepted by a different server process."""
    chosen: dict[int, Conn] = {}
    spare: list[Conn] = []
    for _ in range(tries):
        conn = await connect(server)
        if conn.worker in chosen:
            spare.append(conn)
        else:
            chosen[conn.worker] = conn
        if len(chosen) == count:
            break
    for conn in spare:
        conn.close()
    assert len(chosen) == count, f"{tries} connections all landed on {set(chosen)}"
    return list(chosen.values())


async def send_body(conn: Conn, pattern: bytes, size: int, block: int = 256 * KiB) -> None:
    """Write `size` bytes of `pattern`; stop quietly if the server hangs up.

    The pause between blocks stretches a body over a few hundred milliseconds, so the
    other PATCH arrives while this one is still being received, even across workers
    whose release markers are polled.
    """
    chunk = pattern * block
    sent = 0
    try:
        while sent < size:
            n = min(block, size - sent)
            conn.writer.write(chunk[:n])
            await conn.writer.drain()
            sent += n
            await asyncio.sleep(0.01)
    except ConnectionError:
        pass


def finish_and_read(url: str, offset: int, size: int, filler: bytes) -> bytes:
    """Complete the upload from `offset` with `filler` bytes and download it whole."""
    if offset < size:
        response = httpx.patch(
            url,
            content=filler * (size - offset),
            headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)},
        )
        assert response.status_code == 204, response.text
    download = httpx.get(url, timeout=30)
    assert download.status_code == 200
    return download.content


def head_offset(url: str) -> int:
    response = httpx.head(url, headers=TUS, timeout=10)
    assert response.status_code == 200
    return int(response.headers["upload-offset"])


# -- two PATCHes at once -------------------------------------------------------------


async def race(server: RunningServer, url: str, size: int, distinct_workers: bool) -> list[Reply | None]:
    """Two PATCHes at offset 0, one of b"A" and one of b"B", with their bodies interleaved."""
    conns = await connections_on_distinct_workers(server) if distinct_workers else [await connect(server) for _ in "AB"]
    try:
        for conn in conns:
            conn.writer.write(patch_headers(url, 0, size))
        replies = [asyncio.create_task(read_reply(conn.reader)) for conn in conns]
        senders = [send_body(conn, pattern, size) for conn, pattern in zip(conns, (b"A", b"B"), strict=True)]
        async with asyncio.timeout(30):
            await asyncio.gather(*senders)
            return list(await asyncio.gather(*replies))
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_patches_never_interleave_bytes(server_factory: ServerFactory, workers: int) -> None:
    server = server_factory("--workers", str(workers), "--lock-timeout", "5s")
    size = 8 * MiB
    for _ in range(3):
        url = create_upload(server, size)
        replies = asyncio.run(race(server, url, size, distinct_workers=workers > 1))

        assert all(reply is not None for reply in replies), "a PATCH was closed without an answer"
        statuses = [reply.status for reply in replies if reply is not None]
        assert set(statuses) <= {204, 400, 409, 423}, statuses
        assert statuses.count(204) <= 1, statuses

        offset = head_offset(url)
        stored = finish_and_read(url, offset, size, b"C")[:offset]
        assert stored in (b"A" * offset, b"B" * offset), "bytes of the two PATCHes were mixed"
        for reply, pattern in zip(replies, (b"A", b"B"), strict=True):
            assert reply is not None
            if reply.status == 204:
                assert int(reply.headers["upload-offset"]) == size
                assert stored == pattern * size
            elif reply.status == 400:
                # An interrupted PATCH tells how far the upload got.
                assert 0 <= int(reply.headers["upload-offset"]) <= offset


# -- a stalled PATCH is ended by a newer request ----------------------------------------


async def start_stalled_patch(server: RunningServer, url: str, declared: int, sent: int) -> Conn:
    conn = await connect(server)
    conn.writer.write(patch_headers(url, 0, declared) + b"s" * sent)
    await conn.writer.drain()
    await asyncio.sleep(SETTLE)
    return conn


async def stall_then(server: RunningServer, url: str, newcomer: str, distinct_workers: bool) -> tuple[Reply, Reply]:
    """Stall a PATCH after 100 KiB, then send `newcomer` ("HEAD" or "PATCH") on another connection.

    Returns the newcomer's reply and the stalled PATCH's reply.
    """
    declared, sent = MiB, 100 * KiB
    if distinct_workers:
        stalled, other = await connections_on_distinct_workers(server)
        stalled.writer.write(patch_headers(url, 0, declared) + b"s" * sent)
        await asyncio.sleep(SETTLE)
    else:
        stalled = await start_stalled_patch(server, url, declared, sent)
        other = await connect(server)
    try:
        started = time.monotonic()
        if newcomer == "HEAD":
            other.writer.write(head_request(url))
        else:
            other.writer.write(patch_headers(url, sent, declared - sent) + b"n" * (declared - sent))
        async with asyncio.timeout(10):
            reply = await read_reply(other.reader, has_body=newcomer != "HEAD")
        elapsed = time.monotonic() - started
        assert reply is not None
        assert elapsed < 3, f"{newcomer} waited {elapsed:.1f}s for the stalled PATCH"
        async with asyncio.timeout(5):
            stalled_reply = await read_reply(stalled.reader)
        assert stalled_reply is not None, "the stalled PATCH was closed without an answer"
        return reply, stalled_reply
    finally:
        stalled.close()
        other.close()


@pytest.mark.parametrize(("tus_store", "workers"), [*ON_FILES, ("s3", 1)], indirect=["tus_store"])
def test_head_ends_a_stalled_patch_and_its_bytes_are_kept(server_factory: ServerFactory, workers: int) -> None:
    server = server_factory("--workers", str(workers), "--lock-timeout", "5s")
    url = create_upload(server, MiB)

    head, stalled = asyncio.run(stall_then(server, url, "HEAD", distinct_workers=workers > 1))

    assert head.status == 200
    assert int(head.headers["upload-offset"]) == 100 * KiB
    assert stalled.status == 400
    assert int(stalled.headers["upload-offset"]) == 100 * KiB
    assert finish_and_read(url, 100 * KiB, MiB, b"n") == b"s" * (100 * KiB) + b"n" * (MiB - 100 * KiB)


@pytest.mark.parametrize("workers", [1, 2])
def test_patch_ends_a_stalled_patch_and_resumes_after_its_bytes(server_factory: ServerFactory, workers: int) -> None:
    server = server_factory("--workers", str(workers), "--lock-timeout", "5s")
    url = create_upload(server, MiB)

    patch, stalled = asyncio.run(stall_then(server, url, "PATCH", distinct_workers=workers > 1))

    assert patch.status == 204, patch.body
    assert int(patch.headers["upload-offset"]) == MiB
    assert stalled.status == 400
    assert finish_and_read(url, MiB, MiB, b"") == b"s" * (100 * KiB) + b"n" * (MiB - 100 * KiB)


# -- a silent PATCH ends by itself ------------------------------------------------------


def test_read_timeout_ends_a_silent_patch_and_keeps_its_bytes(server_factory: ServerFactory) -> None:
    server = server_factory("--read-timeout", "1s")
    url = create_upload(server, MiB)

    async def silent_patch() -> tuple[Reply | None, float]:
        conn = await connect(server)
        try:
            conn.writer.write(patch_headers(url, 0, MiB) + b"q" * (100 * KiB))
            started = time.monotonic()
            async with asyncio.timeout(10):
                reply = await read_reply(conn.reader)
            return reply, time.monotonic() - started
        finally:
            conn.close()

    reply, elapsed = asyncio.run(silent_patch())

    # Answering 408 or just closing are both allowed; a hang or a 5xx is not.
    assert reply is None or reply.status == 408, reply
    assert 0.8 < elapsed < 5, elapsed
    assert head_offset(url) == 100 * KiB
    assert finish_and_read(url, 100 * KiB, MiB, b"r") == b"q" * (100 * KiB) + b"r" * (MiB - 100 * KiB)


# -- a cut PATCH ended by the client's HEAD keeps what reached the server --------------------


def test_head_after_a_cut_keeps_every_byte_the_server_had_received(server_factory: ServerFactory) -> None:
    """A client that loses its connection and asks HEAD at once (tus-js-client's first retry)
    ends its old PATCH; the bytes the kernel had taken for that PATCH but the server had not
    read yet are read and kept, not thrown away and sent again."""
    server = server_factory()
    size, sent = 64 * MiB, 48 * MiB
    url = create_upload(server, size)
    content = os.urandom(MiB) * (sent // MiB)
    # The server on one core and this client on another, as in the benchmarks: the client
    # then runs megabytes ahead of the server, which is the case this test is about.
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        psutil.Process(server.process.pid).cpu_affinity([cpus[0]])
        os.sched_setaffinity(0, {cpus[1]})

    async def cut_then_head() -> Reply | None:
        _, cut = await asyncio.open_connection("127.0.0.1", server.port)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            cut.write(patch_headers(url, 0, size) + content)
            await cut.drain()
            cut.close()
            writer.write(head_request(url))
            async with asyncio.timeout(10):
                return await read_reply(reader, has_body=False)
        finally:
            writer.close()

    try:
        head = asyncio.run(cut_then_head())
    finally:
        os.sched_setaffinity(0, cpus)

    assert head is not None and head.status == 200
    assert int(head.headers["upload-offset"]) == sent
    assert finish_and_read(url, sent, size, b"z") == content[:sent] + b"z" * (size - sent)
