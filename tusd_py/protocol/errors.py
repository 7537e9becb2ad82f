"""The protocol's refusals: a status, a short reason, and any headers the status needs."""

from __future__ import annotations


class TusError(Exception):
    """A request the server refuses, with the status the tus protocol names for it."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"TusError({self.status}, {self.reason!r})"


# 460 is tus' own status for a checksum mismatch; the others are plain HTTP.
CHECKSUM_MISMATCH = 460


def bad_request(reason: str) -> TusError:
    return TusError(400, reason)


def not_found() -> TusError:
    return TusError(404, "upload not found")
