"""The load client: tus over raw non-blocking sockets on asyncio, sending preallocated buffers.

Bodies are memoryview slices of one random buffer written with `loop.sock_sendall`, so the
client allocates nothing per chunk and costs a small fraction of what the server does.
Responses are parsed with a minimal HTTP/1.1 reader (status line, headers, Content-Length
body); a server that answers `Connection: close` gets a new connection for the next request.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MiB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """Where a tus server listens and what every request to it carries."""

    port: int
    create_path: str
    headers: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    def metadata_header(self) -> str | None:
        if not self.metadata:
            return None
        return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in self.metadata)


class Body:
    """Upload content: an optional prefix, then `buffer` repeated; sent without copying."""

    def __init__(self, buffer: bytes, prefix: bytes = b"") -> None:
        self.buffer = memoryview(buffer)
        self.prefix = memoryview(prefix)

    def slices(self, start: int, end: int) -> list[memoryview]:
        """Views covering bytes [start, end) of the content."""
        out: list[memoryview] = []
        pos = start
        if pos < len(self.prefix):
            stop = min(end, len(self.prefix))
            out.append(self.prefix[pos:stop])
            pos = stop
        size = len(self.buffer)
        while pos < end:
            inner = (pos - len(self.prefix)) % size
            n = min(end - pos, size - inner)
            out.append(self.buffer[inner : inner + n])
            pos += n
        return out

    def expected(self, start: int, end: int) -> bytes:
        return b"".join(bytes(s) for s in self.slices(start, end))


class HttpError(RuntimeError):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Connection:
    """One keep-alive HTTP/1.1 connection on a raw socket."""

    port: int
    sock: socket.socket | None = None
    pending: bytes = b""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    async def open(self) -> socket.socket:
        if self.sock is None:
            sock = socket.socket()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self.loop.sock_connect(sock, ("127.0.0.1", self.port))
            self.sock, self.pending = sock, b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def send_head(self, method: str, path: str, headers: Sequence[tuple[str, str]]) -> None:
        sock = await self.open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Tus-Resumable: 1.0.0"]
        lines += [f"{name}: {value}" for name, value in headers]
        await self.loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())

    async def send_body(self, views: list[memoryview]) -> None:
        sock = await self.open()
        for view in views:
            await self.loop.sock_sendall(sock, view)

    async def _fill(self, data: bytes, needed: int) -> bytes:
        assert self.sock is not None
        while len(data) < needed:
            more = await self.loop.sock_recv(self.sock, 65536)
            if not more:
                self.close()
                raise HttpError("the server closed the connection in the middle of a response")
            data += more
        return data

    async def _line(self, data: bytes) -> tuple[bytes, bytes]:
        assert self.sock is not None
        while b"\r\n" not in data:
            data = await self._fill(data, len(data) + 1)
        line, _, rest = data.partition(b"\r\n")
        return line, rest

    async def reply(self, head_request: bool = False) -> Response:
        assert self.sock is not None
        data = self.pending
        while b"\r\n\r\n" not in data:
            more = await self.loop.sock_recv(self.sock, 65536)
            if not more:
                self.close()
                raise HttpError("the server closed the connection before answering")
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise HttpError(f"not an HTTP status line: {status_line[:80]!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if head_request or parts[1] in ("204", "304"):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line, rest = await self._line(rest)
                size = int(size_line.split(b";")[0], 16)
                rest = await self._fill(rest, size + 2)
                body += rest[:size]
                rest = rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            rest = await self._fill(rest, length)
            body, rest = rest[:length], rest[length:]
        self.pending = rest
        response = Response(int(parts[1]), headers, body)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return response

    async def request(
        self, method: str, path: str, headers: Sequence[tuple[str, str]], body: list[memoryview] | None = None
    ) -> Response:
        await self.send_head(method, path, headers)
        if body:
            await self.send_body(body)
        return await self.reply(head_request=method == "HEAD")


def upload_path(location: str) -> str:
    """The request path of a Location header, absolute URL or path alike."""
    parts = urlsplit(location)
    return parts.path or "/"


async def create(conn: Connection, target: Target, size: int) -> str:
    headers = [*target.headers, ("Upload-Length", str(size)), ("Content-Length", "0")]
    metadata = target.metadata_header()
    if metadata:
        headers.append(("Upload-Metadata", metadata))
    response = await conn.request("POST", target.create_path, headers)
    if response.status != 201 or "location" not in response.headers:
        raise HttpError(f"POST answered {response.status}: {response.body[:200]!r}")
    return upload_path(response.headers["location"])


async def patch(conn: Connection, target: Target, path: str, body: Body, start: int, end: int) -> int:
    headers = [
        *target.headers,
        ("Content-Type", "application/offset+octet-stream"),
        ("Upload-Offset", str(start)),
        ("Content-Length", str(end - start)),
    ]
    response = await conn.request("PATCH", path, headers, body.slices(start, end))
    if response.status != 204:
        raise HttpError(f"PATCH at {start} answered {response.status}: {response.body[:200]!r}")
    offset = int(response.headers.get("upload-offset", "-1"))
    if offset != end:
        raise HttpError(f"PATCH at {start} left the offset at {offset}, not {end}")
    return offset


async def head_offset(conn: Connection, target: Target, path: str) -> int:
    response = await conn.request("HEAD", path, [*target.headers])
    if response.status != 200:
        raise HttpError(f"HEAD answered {response.status}")
    return int(response.headers["upload-offset"])


# --- scenarios ---------------------------------------------------------------------------


async def upload_one(target: Target, body: Body, size: int, patch_size: int) -> tuple[str, float]:
    """POST, then PATCHes of `patch_size` on one connection; returns (path, seconds)."""
    conn = Connection(target.port)
    try:
        started = time.perf_counter()
        path = await create(conn, target, size)
        offset = 0
        while offset < size:
            offset = await patch(conn, target, path, body, offset, min(size, offset + patch_size))
        return path, time.perf_counter() - started
    finally:
        conn.close()


async def big(target: Target, body: Body, size: int, patch_size: int) -> dict[str, object]:
    path, seconds = await upload_one(target, body, size, patch_size)
    return {"upload_path": path, "bytes": size, "seconds": seconds, "mb_per_s": size / seconds / 1e6}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


async def many(target: Target, body: Body, count: int, size: int) -> dict[str, object]:
    """`count` uploads of `size` bytes at once, each on its own connection in one PATCH."""
    started = time.perf_counter()
    results = await asyncio.gather(*(upload_one(target, body, size, size) for _ in range(count)))
    seconds = time.perf_counter() - started
    latencies = [lat for _, lat in results]
    return {
        "uploads": count,
        "upload_bytes": size,
        "bytes": count * size,
        "seconds": seconds,
        "mb_per_s": count * size / seconds / 1e6,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000,
    }


async def small(target: Target, connections: int, duration: float) -> dict[str, object]:
    """POST a 1 KiB upload then HEAD it, in a loop on each of `connections` connections."""
    deadline = time.perf_counter() + duration
    counts = [0] * connections
    errors: list[str] = []

    async def worker(index: int) -> None:
        conn = Connection(target.port)
        try:
            while time.perf_counter() < deadline:
                path = await create(conn, target, 1024)
                if await head_offset(conn, target, path) != 0:
                    raise HttpError("a new upload's HEAD did not answer offset 0")
                counts[index] += 1
        except (HttpError, OSError) as error:
            errors.append(str(error))
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(connections)))
    seconds = time.perf_counter() - started
    created = sum(counts)
    if errors and not created:
        raise HttpError(f"no upload was created: {errors[0]}")
    result: dict[str, object] = {
        "connections": connections,
        "creates": created,
        "seconds": seconds,
        "creates_per_s": created / seconds,
    }
    if errors:
        result["errors"] = len(errors)
        result["first_error"] = errors[0]
    return result


async def resume(target: Target, body: Body, size: int, cut_at: int, settle_timeout: float) -> dict[str, object]:
    """PATCH the whole upload but cut the connection after `cut_at` bytes; HEAD; resume.

    The HEAD is repeated until the offset stops moving (a server may still be writing
    what it received when the connection dropped), then the rest is sent from there.
    """
    conn = Connection(target.port)
    path = await create(conn, target, size)
    headers = [
        *target.headers,
        ("Content-Type", "application/offset+octet-stream"),
        ("Upload-Offset", "0"),
        ("Content-Length", str(size)),
    ]
    await conn.send_head("PATCH", path, headers)
    await conn.send_body(body.slices(0, cut_at))
    conn.close()
    cut = time.perf_counter()

    conn = Connection(target.port)
    try:
        offsets = [await head_offset(conn, target, path)]
        deadline = cut + settle_timeout
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
            offsets.append(await head_offset(conn, target, path))
            if offsets[-1] == offsets[-2] and len(offsets) >= 3:
                break
        offset = offsets[-1]
        if not 0 <= offset <= cut_at:
            raise HttpError(f"after the cut at {cut_at} the server reports offset {offset}")
        resumed = time.perf_counter()
        await patch(conn, target, path, body, offset, size)
        done = time.perf_counter()
    finally:
        conn.close()
    return {
        "upload_path": path,
        "bytes": size,
        "cut_at": cut_at,
        "offset_after_cut": offset,
        "kept_fraction": offset / cut_at,
        "settle_s": resumed - cut,
        "resume_s": done - resumed,
    }


async def loopback(port: int, body: Body, size: int) -> dict[str, object]:
    """Stream `size` bytes to a sink that answers one byte when it has them all."""
    conn = Connection(port)
    sock = await conn.open()
    try:
        started = time.perf_counter()
        await conn.send_body(body.slices(0, size))
        if await conn.loop.sock_recv(sock, 1) != b"k":
            raise HttpError("the sink did not confirm")
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"bytes": size, "seconds": seconds, "mb_per_s": size / seconds / 1e6}


def sink(size: int, store: str | None = None) -> None:
    """A blocking socket sink, run in its own process: print its port, receive `size` bytes
    into one reused buffer (each written to the new file `store` if given), answer b"k"."""
    fd = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if store else None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        with conn:
            scratch = memoryview(bytearray(4 * MiB))
            received = 0
            while received < size:
                n = conn.recv_into(scratch, min(size - received, len(scratch)))
                if not n:
                    break
                if fd is not None:
                    os.pwrite(fd, scratch[:n], received)
                received += n
            conn.sendall(b"k")
    if fd is not None:
        os.close(fd)
