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


class Locker(Protocol):
    def hold(self, upload_id: str, on_release_requested: Callable[[], None]) -> AbstractAsyncContextManager[None]:
        """Hold the upload's lock for the body of the `async with`.

        If another request holds it, that holder's `on_release_requested` is called so
        it can end (keeping its bytes), and this waits up to the locker's timeout before
        raising LockTimeout. Whoever holds the lock may be asked to let go at any time.
        """
