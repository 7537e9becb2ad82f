"""A client of the IETF draft "Resumable Uploads for HTTP", written from the draft's text
(draft-ietf-httpbis-resumable-upload-12, interop version 8) and not from the server's
code: it parses the responses' Structured Fields itself.

It writes HTTP/1.1 on plain sockets, one connection per request, so that a test can
send part of a body and then cut the connection, or stall it, as networks do.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

INTEROP_VERSION = "8"
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def complete(self) -> bool | None:
        """Upload-Complete, a Structured Field Boolean."""
        value = (self.header("upload-complete") or "").strip()
        return {"?1": True, "?0": False}.get(value)

    @property
    def offset(self) -> int | None:
        return _integer(self.header("upload-offset"))

    @property
    def length(self) -> int | None:
        return _integer(self.header("upload-length"))

    @property
    def limits(self) -> dict[str, int]:
        """Upload-Limit, a Dictionary; members whose value is not an Integer are left out."""
        members: dict[str, int] = {}
        for member in (self.header("upload-limit") or "").split(","):
            key, _, value = member.strip().partition("=")
            number = _integer(value)
            if key and number is not None:
                members[key] = number
        return members

    @property
    def location(self) -> str:
        value = self.header("location")
        assert value is not None, f"no Location in a {self.status} response"
        return value

    def problem(self) -> dict[str, object]:
        assert self.header("content-type") == "application/problem+json", self.headers
        document = json.loads(self.body)
        assert isinstance(document, dict)
        return document

    def problem_type(self) -> str:
        kind = self.problem()["type"]
        assert isinstance(kind, str)
        return kind.removeprefix(PROBLEM_TYPES)


def _integer(value: str | None) -> int | None:
    if value is None or not re.fullmatch(r"\s*-?[0-9]{1,15}\s*", value):
        return None
    return int(value)


class DraftClient:
    """Requests to one server; `url` arguments are absolute or paths on it."""

    def __init__(self, origin: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(origin)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout

    # -- the draft's operations ------------------------------------------------------

    def discover(self, url: str) -> Response:
        return self.request("OPTIONS", url)

    def create(
        self, url: str, content: bytes = b"", *, complete: bool, length: int | None = None, **fields: str
    ) -> Response:
        headers = {"Upload-Complete": _flag(complete), **_fields(fields)}
        if length is not None:
            headers["Upload-Length"] = str(length)
        return self.request("POST", url, headers, content)

    def retrieve_offset(self, url: str) -> Response:
        return self.request("HEAD", url)

    def append(
        self,
        url: str,
        offset: int,
        content: bytes = b"",
        *,
        complete: bool,
        length: int | None = None,
        content_type: str = PARTIAL_UPLOAD,
        **fields: str,
    ) -> Response:
        headers = {
            "Upload-Complete": _flag(complete),
            "Upload-Offset": str(offset),
            "Content-Type": content_type,
            **_fields(fields),
        }
        if length is not None:
            headers["Upload-Length"] = str(length)
        return self.request("PATCH", url, headers, content)

    def cancel(self, url: str) -> Response:
        return self.request("DELETE", url)

    def upload(self, url: str, data: bytes, *, part_size: int) -> tuple[str, Response]:
        """A careful upload: create with no content to learn the URL, then append parts,
        resuming from the server's offset whenever a part fails. Returns the upload's URL
        and the last response."""
        created = self.create(url, complete=False, length=len(data))
        assert created.status == 201, created
        location = created.location
        offset = 0
        for _ in range(len(data) // part_size + 10):
            part = data[offset : offset + part_size]
            last = offset + len(part) == len(data)
            response = self.append(location, offset, part, complete=last)
            if response.status < 300 and response.complete:
                return location, response
            if response.status < 300:
                offset += len(part)
                continue
            # Resume from what the server processed (it can be less than was sent).
            state = self.retrieve_offset(location)
            assert state.offset is not None, state
            offset = state.offset
        raise AssertionError("the upload did not complete")

    # -- HTTP/1.1 on a socket ---------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        content: bytes | Iterable[bytes] = b"",
        *,
        interop: bool = True,
    ) -> Response:
        """One request; an iterable content is sent chunked (no Content-Length)."""
        length = len(content) if isinstance(content, bytes) else None
        with self.open(method, url, headers, length, interop=interop) as sock:
            if isinstance(content, bytes):
                sock.sendall(content)
            else:
                for block in content:
                    sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            return read_response(sock, head=method == "HEAD")

    def open(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None,
        content_length: int | None,
        *,
        interop: bool = True,
    ) -> socket.socket:
        """Send a request's head and return the socket: the caller sends (part of) the
        content, then reads the response with `read_response` or cuts the connection."""
        target = urlsplit(url)
        path = target.path or "/"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close"]
        if interop:
            lines.append(f"Upload-Draft-Interop-Version: {INTEROP_VERSION}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if content_length is None:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append(f"Content-Length: {content_length}")
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return sock


def cut(sock: socket.socket) -> None:
    """End the connection abruptly, as a lost network does (a reset, not a clean close)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_response(sock: socket.socket, *, head: bool = False) -> Response:
    """The response on a `Connection: close` socket; interim (1xx) responses are skipped."""
    buffer = b""
    while True:
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection without a response")
            buffer += data
        head_bytes, _, buffer = buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if status >= 200:
            break
    if head or status in (204, 304):
        return Response(status, headers, b"")
    length = _integer(headers.get("content-length"))
    while length is None or len(buffer) < length:
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
    return Response(status, headers, buffer if length is None else buffer[:length])


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _flag(value: bool) -> str:
    return "?1" if value else "?0"


def _fields(fields: dict[str, str]) -> dict[str, str]:
    """Keyword arguments as header fields: content_type -> Content-Type."""
    return {"-".join(part.capitalize() for part in name.split("_")): value for name, value in fields.items()}
