"""The locking interface: one request per upload at a time."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class LockTimeout(Exception):
    """The holder did not let go of the upload within the lock timeout."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id!r} is locked by another request")
        self.upload_id = upload_id


class LockUnavailable(Exception):
    """The lock service cannot be reached, so no lock can be taken (nor proven held)."""

    def __init__(self, upload_id: str, reason: str) -> None:
        super().__init__(f"lock service unavailable for upload {upload_id!r}: {reason}")
        self.upload_id = upload_id


class Locker(Protocol):
    def hold(
        self, upload_id: str, on_release_requested: Callable[[], None], *, requested_at: float | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold the upload's lock for the body of the `async with`.

        If another request holds it and is older (its `requested_at`, a `time.time()`
        taken when the HTTP request arrived, is earlier), that holder's
        `on_release_requested` is called so it can end, keeping its bytes. Either way
        this waits up to the locker's timeout before raising LockTimeout. Only newer
        requests preempt: a request of a dropped connection that reaches the lock late
        must not end the live request that replaced it. None means now.

        A locker on a remote service raises LockUnavailable when that service cannot
        be reached, and calls `on_release_requested` when it can no longer prove the
        lock is held (so the holder stops, as if a newer request had asked).
        """
