"""Parsing of the tus request headers. Every function raises only TusError."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import TusError, bad_request

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# Values beyond a signed 64-bit integer are refused: no store can hold them and other
# servers overflow on them.
MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def _non_negative(name: str, value: str) -> int:
    value = value.strip()
    if not _DIGITS.fullmatch(value):
        raise bad_request(f"{name} must be a non-negative integer")
    number = int(value)
    if number > MAX_INT64:
        raise bad_request(f"{name} is too large")
    return number


def check_tus_resumable(value: str | None) -> None:
    if value != TUS_VERSION:
        raise TusError(412, "unsupported or missing Tus-Resumable version", {"Tus-Version": TUS_VERSION})


def parse_upload_offset(value: str | None) -> int:
    if value is None:
        raise bad_request("Upload-Offset header is required")
    return _non_negative("Upload-Offset", value)


def parse_upload_length(value: str | None) -> int | None:
    return None if value is None else _non_negative("Upload-Length", value)


def parse_content_length(value: str | None) -> int | None:
    return None if value is None else _non_negative("Content-Length", value)


def is_offset_content_type(value: str | None) -> bool:
    if value is None:
        return False
    return value.split(";", 1)[0].strip().lower() == OFFSET_CONTENT_TYPE


def check_patch_content_type(value: str | None) -> None:
    if not is_offset_content_type(value):
        raise TusError(415, f"Content-Type must be {OFFSET_CONTENT_TYPE}")


@dataclass(frozen=True)
class CreationLength:
    """What a creation request says about the upload's length."""

    length: int | None
    deferred: bool


def parse_creation_length(length: str | None, defer: str | None, *, is_final: bool) -> CreationLength:
    if is_final:
        if length is not None:
            raise bad_request("a final upload must not carry Upload-Length")
        return CreationLength(None, False)
    if length is not None and defer is not None:
        raise bad_request("Upload-Length and Upload-Defer-Length are mutually exclusive")
    if defer is not None:
        if defer.strip() != "1":
            raise bad_request("Upload-Defer-Length must be 1")
        return CreationLength(None, True)
    if length is None:
        raise bad_request("Upload-Length or Upload-Defer-Length: 1 is required")
    return CreationLength(parse_upload_length(length), False)


@dataclass(frozen=True)
class Concat:
    """A parsed Upload-Concat header: partial, or final with its partials' URLs."""

    is_partial: bool
    is_final: bool
    partial_urls: tuple[str, ...] = ()


def parse_upload_concat(value: str | None) -> Concat | None:
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return Concat(is_partial=True, is_final=False)
    if value.startswith("final;"):
        urls = tuple(u for u in value[len("final;") :].split(" ") if u)
        if not urls:
            raise bad_request("Upload-Concat: final needs at least one partial upload URL")
        return Concat(is_partial=False, is_final=True, partial_urls=urls)
    raise bad_request("Upload-Concat must be 'partial' or 'final;<urls>'")


def upload_id_from_url(url: str) -> str:
    """The upload id is the last path segment of a partial upload's URL (absolute or not)."""
    path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return path.rsplit("/", 1)[-1]
