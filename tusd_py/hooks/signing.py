"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, sent in one header.

    Hook-Signature: t=1700000000,v1=<hex digest>

A receiver recomputes the digest with the shared secret, compares in constant time, and
refuses timestamps too far from its clock so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Hook-Signature"
DEFAULT_TOLERANCE = 300.0


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The Hook-Signature header value for `body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(key, str(moment).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `header` is a valid signature of `body` made within `tolerance` seconds."""
    if not header:
        return False
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    timestamp_text, digest = fields.get("t", ""), fields.get("v1", "")
    if not timestamp_text.isdigit() or len(timestamp_text) > 12 or not digest:
        return False
    timestamp = int(timestamp_text)
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), digest.encode("utf-8", "replace"))
