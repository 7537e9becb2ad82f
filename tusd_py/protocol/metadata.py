"""The Upload-Metadata codec: comma-separated `key base64value` pairs."""

from __future__ import annotations

import base64
import binascii
import re

from .errors import bad_request

# Keys are ASCII without spaces or commas; the spec says nothing more, and a tighter rule
# would refuse metadata other servers accept.
_KEY = re.compile(r"[!-+\--~]+")
MAX_METADATA_BYTES = 16 * 1024


def decode_metadata(header: str | None) -> dict[str, str | None]:
    """Parse an Upload-Metadata header; a key without a value maps to None."""
    if header is None or header.strip() == "":
        return {}
    if len(header) > MAX_METADATA_BYTES:
        raise bad_request(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    result: dict[str, str | None] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not _KEY.fullmatch(parts[0]):
            raise bad_request("Upload-Metadata is malformed: expected 'key base64value' pairs")
        key = parts[0]
        if key in result:
            raise bad_request(f"Upload-Metadata repeats the key {key!r}")
        if len(parts) == 1 or parts[1] == "":
            result[key] = None
            continue
        try:
            raw = base64.b64decode(parts[1], validate=True)
            result[key] = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise bad_request(f"Upload-Metadata value of {key!r} is not valid base64 of UTF-8 text") from None
    return result


def encode_metadata(metadata: dict[str, str | None]) -> str:
    """Render metadata as an Upload-Metadata header value."""
    pairs = []
    for key, value in metadata.items():
        if value is None:
            pairs.append(key)
        else:
            pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}")
    return ",".join(pairs)
