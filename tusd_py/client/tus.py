"""A tus 1.0 client on httpx: create, HEAD, PATCH in streamed chunks, with retries.

Errors come in two kinds. `Retryable` ones (a dropped connection, a timeout, 5xx, 408,
409, 423, 429) are worth another attempt after re-reading the server's offset; `Refused`
ones (any other 4xx) end the command with the server's own message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import httpx

from ..protocol.metadata import encode_metadata

TUS_VERSION = "1.0.0"
# How much of a chunk is read from the file at a time: a chunk is streamed, never held whole.
PIECE = 64 * 1024
# 409: our offset is stale (a PATCH that failed late still landed); 423: the server still
# holds the lock of our previous, dropped PATCH; 408: the body went silent.
RETRY_STATUSES = frozenset({408, 409, 423, 429})

T = TypeVar("T")
Notice = Callable[[str], None]


class ClientError(Exception):
    """A failure that ends the command; its text is the one-line message shown."""


class Refused(ClientError):
    """The server said no, for a reason another attempt will not change."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")


class Retryable(Exception):
    """A failure another attempt may get past: the network or a busy server."""


def server_message(response: httpx.Response) -> str:
    """The server's explanation: the asset API's JSON error message, or the tus layer's text."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str):
            return message
    first = text.splitlines()[0] if text else ""
    return first[:300]


def check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code in expected:
        return response
    status = response.status_code
    message = server_message(response)
    if status in RETRY_STATUSES or status >= 500:
        raise Retryable(f"{status} {response.reason_phrase}" + (f": {message}" if message else ""))
    raise Refused(status, response.reason_phrase, message)


def send_request(http: httpx.Client, method: str, url: str, **kwargs: object) -> httpx.Response:
    try:
        return http.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.TransportError as error:
        raise Retryable(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__) from error


@dataclass(frozen=True)
class RetryPolicy:
    """`retries` further attempts after a failure, waiting `delay` doubled each time."""

    retries: int = 5
    delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def pause(self, failures: int, error: Retryable, notice: Notice) -> None:
        """Wait before attempt `failures` + 1, or give up when the retries are spent."""
        if failures > self.retries:
            raise ClientError(f"gave up after {self.retries} retries: {error}")
        wait = min(self.delay * 2 ** (failures - 1), self.max_delay)
        notice(f"{error}; retry {failures}/{self.retries} in {wait:g} s")
        self.sleep(wait)

    def run(self, action: Callable[[], T], notice: Notice) -> T:
        failures = 0
        while True:
            try:
                return action()
            except Retryable as error:
                failures += 1
                self.pause(failures, error, notice)


@dataclass(frozen=True)
class UploadStatus:
    offset: int
    length: int | None


class TusClient:
    """One request per method; every request carries Tus-Resumable."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def create(self, endpoint: str, length: int, metadata: dict[str, str | None]) -> str:
        """POST the creation request; returns the upload's absolute URL."""
        headers = {"Tus-Resumable": TUS_VERSION, "Upload-Length": str(length)}
        if metadata:
            headers["Upload-Metadata"] = encode_metadata(metadata)
        response = check(send_request(self.http, "POST", endpoint, headers=headers), 201)
        location = response.headers.get("Location")
        if not location:
            raise ClientError("the server created the upload but sent no Location")
        return str(response.url.join(location))

    def head(self, url: str) -> UploadStatus | None:
        """The server's offset and length; None when the upload is gone (404, 410)."""
        response = send_request(self.http, "HEAD", url, headers={"Tus-Resumable": TUS_VERSION})
        if response.status_code in (404, 410):
            return None
        check(response, 200, 204)
        offset = _header_int(response, "Upload-Offset")
        if offset is None:
            raise ClientError(f"HEAD {url} answered without a valid Upload-Offset")
        return UploadStatus(offset, _header_int(response, "Upload-Length"))

    def patch(self, url: str, offset: int, body: Iterator[bytes], length: int) -> int:
        """Send `length` bytes from `body` at `offset`; returns the server's new offset."""
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            # Given explicitly, so httpx streams the iterator without chunked encoding.
            "Content-Length": str(length),
        }
        response = check(send_request(self.http, "PATCH", url, headers=headers, content=body), 204)
        new_offset = _header_int(response, "Upload-Offset")
        if new_offset is None:
            raise Retryable("PATCH answered without a valid Upload-Offset")
        return new_offset


def _header_int(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "")
    return int(value) if value.isascii() and value.isdigit() else None


class Uploader:
    """Sends one file to one upload URL from the server's offset to the end.

    After any retryable failure the offset is read again with HEAD before the next PATCH:
    a PATCH that failed may still have delivered some or all of its bytes.
    """

    def __init__(
        self,
        client: TusClient,
        path: Path,
        *,
        chunk_size: int,
        policy: RetryPolicy,
        on_progress: Callable[[int], None] = lambda offset: None,
        notice: Notice = lambda text: None,
    ) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.client = client
        self.path = path
        self.size = path.stat().st_size
        self.chunk_size = chunk_size
        self.policy = policy
        self.on_progress = on_progress
        self.notice = notice
        self.offset = 0

    def status(self, url: str) -> UploadStatus | None:
        """The server's view of `url`, or None when it cannot continue this file."""
        status = self.policy.run(lambda: self.client.head(url), self.notice)
        if status is None or status.length != self.size or status.offset > self.size:
            return None
        return status

    def send(self, url: str, offset: int) -> None:
        """PATCH from `offset` (just read from the server) until the upload is complete."""
        self.offset = offset
        self.on_progress(offset)
        failures = 0
        synced = True
        with self.path.open("rb") as file:
            while True:
                try:
                    if not synced:
                        status = self.client.head(url)
                        if status is None:
                            raise ClientError(f"the upload {url} is gone from the server")
                        if status.length != self.size:
                            raise ClientError(f"the server holds {status.length} bytes for {url}, not {self.size}")
                        self.offset = status.offset
                        self.on_progress(self.offset)
                        synced = True
                    if self.offset >= self.size:
                        return
                    length = min(self.chunk_size, self.size - self.offset)
                    sent = self.client.patch(url, self.offset, self._chunk(file, self.offset, length), length)
                    if sent <= self.offset:
                        raise Retryable(f"the server's offset did not advance from {self.offset}")
                    self.offset = sent
                    self.on_progress(sent)
                    failures = 0
                except Retryable as error:
                    synced = False
                    failures += 1
                    self.policy.pause(failures, error, self.notice)

    def _chunk(self, file: IO[bytes], start: int, length: int) -> Iterator[bytes]:
        file.seek(start)
        left = length
        while left:
            piece = file.read(min(PIECE, left))
            if not piece:
                raise ClientError(f"{self.path} became shorter while it was being uploaded")
            left -= len(piece)
            self.on_progress(start + length - left)
            yield piece
