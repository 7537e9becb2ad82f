"""Upload ids: random, URL-safe, and checked before they reach a path or an object key."""

from __future__ import annotations

import re
import secrets

from .errors import not_found

# Letters, digits, '-' and '_' only: no dot, slash or percent can reach a file name.
_VALID_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def new_upload_id() -> str:
    """32 hex digits: 128 bits from the OS's CSPRNG."""
    return secrets.token_hex(16)


def is_valid_upload_id(upload_id: str) -> bool:
    return _VALID_ID.fullmatch(upload_id) is not None


def check_upload_id(upload_id: str) -> str:
    """Return the id if it is well formed; answer 404 (not 400) so probing learns nothing."""
    if not is_valid_upload_id(upload_id):
        raise not_found()
    return upload_id
