"""Single byte-range requests for downloads (RFC 9110 section 14)."""

from __future__ import annotations

import re

from .errors import TusError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Return the inclusive (first, last) byte positions asked for, or None for the whole.

    Several ranges in one header, or a malformed one, are ignored (the whole body is
    sent), which RFC 9110 allows; a well-formed range that lies outside the body is 416.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if len(first_text) > 19 or len(last_text) > 19:
        return None
    if first_text == "":
        if last_text == "":
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = size - 1 if last_text == "" else min(int(last_text), size - 1)
    if last_text != "" and int(last_text) < first:
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, last


def _unsatisfiable(size: int) -> TusError:
    return TusError(416, "requested range not satisfiable", {"Content-Range": f"bytes */{size}"})
