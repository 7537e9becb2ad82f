"""The IETF draft "Resumable Uploads for HTTP", sans-I/O.

Implemented: draft-ietf-httpbis-resumable-upload-12 (the httpwg/http-extensions text
after -11), interop version 8. A request speaks the draft when it names an interop
version; everything here is pure: which protocol a request speaks, the draft's fields
(Structured Field Integers and Booleans), the upload's length as a request announces
it, Upload-Limit, and the problem details (RFC 9457) of the draft's refusals.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from .errors import TusError
from .structured import (
    StructuredError,
    parse_boolean,
    parse_integer,
    serialize_boolean,
    serialize_integer_dictionary,
)

INTEROP_VERSION = 8
INTEROP_HEADER = "upload-draft-interop-version"
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_JSON = "application/problem+json"

TUS = "tus"
DRAFT = "draft"

_PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"


@dataclass(frozen=True)
class ProblemType:
    uri: str
    title: str


MISMATCHING_OFFSET = ProblemType(_PROBLEM_TYPES + "mismatching-upload-offset", "Mismatching Upload Offset")
COMPLETED_UPLOAD = ProblemType(_PROBLEM_TYPES + "completed-upload", "Upload Is Completed")
INCONSISTENT_LENGTH = ProblemType(_PROBLEM_TYPES + "inconsistent-upload-length", "Inconsistent Upload Length Values")


class DraftError(TusError):
    """A refusal that has one of the draft's problem types, with its extension members."""

    def __init__(
        self,
        status: int,
        reason: str,
        problem: ProblemType,
        members: Mapping[str, int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, reason, headers)
        self.problem = problem
        self.members = dict(members or {})


def mismatching_offset(expected: int, provided: int) -> DraftError:
    return DraftError(
        409,
        f"Upload-Offset {provided} does not match the upload's offset {expected}",
        MISMATCHING_OFFSET,
        {"expected-offset": expected, "provided-offset": provided},
        {"Upload-Offset": str(expected)},
    )


def completed_upload() -> DraftError:
    return DraftError(400, "the upload is complete: nothing more can be appended", COMPLETED_UPLOAD)


def inconsistent_length(reason: str) -> DraftError:
    return DraftError(400, reason, INCONSISTENT_LENGTH)


# -- which protocol -----------------------------------------------------------------------


def protocol_of(headers: Mapping[str, str]) -> str:
    """DRAFT when the request names an interop version (its value is checked later), TUS
    otherwise: a request with neither field keeps tus' answers."""
    return DRAFT if INTEROP_HEADER in headers else TUS


def check_draft_request(interop_version: str | None, has_tus_resumable: bool) -> None:
    """Refuse a draft request this server cannot take as one."""
    try:
        version = parse_integer(interop_version or "")
    except StructuredError:
        raise TusError(400, "Upload-Draft-Interop-Version must be an Integer") from None
    if version != INTEROP_VERSION:
        raise TusError(
            400,
            f"Upload-Draft-Interop-Version {version} is not supported: this server speaks interop version "
            f"{INTEROP_VERSION}",
        )
    if has_tus_resumable:
        raise TusError(
            400, "a request speaks tus (Tus-Resumable) or the draft (Upload-Draft-Interop-Version), not both"
        )


# -- fields ---------------------------------------------------------------------------------


def parse_flag(value: str | None) -> bool | None:
    """Upload-Complete; None when absent or not a Boolean (the draft ignores such a field)."""
    if value is None:
        return None
    try:
        return parse_boolean(value)
    except StructuredError:
        return None


def parse_size(value: str | None) -> int | None:
    """Upload-Offset and Upload-Length: a non-negative Integer, or None (absent or ignored)."""
    if value is None:
        return None
    try:
        number = parse_integer(value)
    except StructuredError:
        return None
    return number if number >= 0 else None


def format_flag(value: bool) -> str:
    return serialize_boolean(value)


def is_partial_upload(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == PARTIAL_UPLOAD


def may_carry_content(content_length: int | None, transfer_encoding: str | None) -> bool:
    """Whether the request has content: HTTP/1.1 frames a body by one of these two fields."""
    return content_length > 0 if content_length is not None else transfer_encoding is not None


def upload_limit(max_size: int | None, max_age: int | None) -> str | None:
    """The Upload-Limit value, or None when no limit applies."""
    members: dict[str, int] = {}
    if max_size is not None:
        members["max-size"] = max_size
    if max_age is not None:
        members["max-age"] = max(0, max_age)
    return serialize_integer_dictionary(members) if members else None


# -- the upload's length -----------------------------------------------------------------


def announced_length(upload_length: int | None, complete: bool, content_length: int | None, offset: int) -> int | None:
    """The length a creation or append request announces, if it does.

    Two indicators exist: Upload-Length, and Upload-Complete: ?1 with a Content-Length
    (then the length is the offset plus the content). Both present must agree.
    """
    from_content = offset + content_length if complete and content_length is not None else None
    if upload_length is not None and from_content is not None and upload_length != from_content:
        raise inconsistent_length(
            f"Upload-Length {upload_length} does not match the {offset} bytes stored plus the "
            f"Content-Length {content_length} of a request that completes the upload"
        )
    return upload_length if upload_length is not None else from_content


def length_to_record(known: int | None, announced: int | None, offset: int) -> int | None:
    """The length to record now, if any; a request contradicting what is known is refused."""
    if announced is None:
        return None
    if known is not None:
        if announced != known:
            raise inconsistent_length(f"the upload's length is {known}, this request announces {announced}")
        return None
    if announced < offset:
        raise inconsistent_length(f"the length {announced} is less than the {offset} bytes already stored")
    return announced


# -- problem details ----------------------------------------------------------------------


def problem_document(
    status: int, reason: str, problem: ProblemType | None = None, members: Mapping[str, int] | None = None
) -> bytes:
    """An application/problem+json body (RFC 9457); about:blank when the draft names no type."""
    if problem is not None:
        kind, title = problem.uri, problem.title
    else:
        kind = "about:blank"
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    document: dict[str, object] = {"type": kind, "title": title, "status": status, "detail": reason}
    document.update(members or {})
    return json.dumps(document).encode()


# -- representation metadata of the creation request ------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})")
_DISPOSITION_TYPE = re.compile(rf"\s*{_TOKEN}\s*")
_PARAMETER = re.compile(rf';\s*({_TOKEN})\s*=\s*("(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x09\x20-\x7e])*"|{_TOKEN})\s*')
_EXT_VALUE = re.compile(r"(UTF-8|ISO-8859-1)'[A-Za-z0-9-]*'((?:%[0-9A-Fa-f]{2}|[A-Za-z0-9!#$&+\-.^_`|~])*)", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def representation_metadata(content_type: str | None, content_disposition: str | None) -> dict[str, str]:
    """`filetype` and `filename` from the creation request's Content-Type and
    Content-Disposition (RFC 6266), for hooks; values that do not parse are left out."""
    metadata: dict[str, str] = {}
    if content_type is not None:
        media = _MEDIA_TYPE.fullmatch(content_type.split(";", 1)[0].strip())
        if media is not None and media.group().lower() != PARTIAL_UPLOAD:
            metadata["filetype"] = media.group().lower()
    if content_disposition is not None:
        filename = _filename(content_disposition)
        if filename:
            metadata["filename"] = filename
    return metadata


def _filename(value: str) -> str | None:
    start = _DISPOSITION_TYPE.match(value)
    if start is None:
        return None
    params: dict[str, str] = {}
    pos = start.end()
    while pos < len(value):
        found = _PARAMETER.match(value, pos)
        if found is None:
            return None
        name, raw = found.group(1).lower(), found.group(2)
        params[name] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = found.end()
    name = None
    if "filename*" in params:
        name = _ext_value(params["filename*"])
    if name is None:
        name = params.get("filename")
    if name is None or _CONTROL.search(name):
        return None
    return name


def _ext_value(value: str) -> str | None:
    """RFC 8187: charset'language'percent-encoded."""
    found = _EXT_VALUE.fullmatch(value)
    if found is None:
        return None
    try:
        return unquote_to_bytes(found.group(2)).decode(found.group(1).lower())
    except UnicodeDecodeError:
        return None
