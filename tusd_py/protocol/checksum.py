"""The checksum extension: parse Upload-Checksum and hash the body while it streams."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Protocol

from .errors import TusError

ALGORITHMS: dict[str, str] = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    def hasher(self) -> Hasher:
        return hashlib.new(ALGORITHMS[self.algorithm])


def parse_checksum(header: str | None) -> Checksum | None:
    """Parse `Upload-Checksum: <algorithm> <base64 digest>`; None when absent."""
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2:
        raise TusError(400, "Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm, encoded = parts[0].lower(), parts[1]
    if algorithm not in ALGORITHMS:
        raise TusError(400, f"unsupported checksum algorithm {parts[0]!r}")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise TusError(400, "Upload-Checksum digest is not valid base64") from None
    if len(digest) != hashlib.new(ALGORITHMS[algorithm]).digest_size:
        raise TusError(400, f"Upload-Checksum digest has the wrong length for {algorithm}")
    return Checksum(algorithm, digest)
