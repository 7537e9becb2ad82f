"""The storage interface: one narrow Store, and optional abilities a store may offer.

The handler speaks HTTP and nothing of storage; a store speaks storage and nothing of
HTTP. Like tusd, abilities that not every backend can offer (termination, concatenation,
deferred lengths, listing for expiry) are separate protocols, checked with isinstance.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

Buffer = bytes | bytearray | memoryview


class UploadNotFound(Exception):
    """No upload with this id exists in the store."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id!r} not found")
        self.upload_id = upload_id


@dataclass(frozen=True)
class NewUpload:
    """What the handler asks a store to create."""

    id: str
    size: int | None
    metadata: dict[str, str | None] = field(default_factory=dict)
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: tuple[str, ...] = ()
    # Which protocol created it ("tus" or "draft"): neither may reinterpret the other's uploads.
    protocol: str = "tus"


@dataclass(frozen=True)
class UploadInfo:
    """An upload as stored. `offset` is always derived from the stored bytes."""

    id: str
    size: int | None
    offset: int
    metadata: dict[str, str | None]
    created_at: float
    modified_at: float
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: tuple[str, ...] = ()
    # Final uploads waiting for this partial to finish (concatenation-unfinished).
    waiting_finals: tuple[str, ...] = ()
    storage: dict[str, str] = field(default_factory=dict)
    protocol: str = "tus"

    @property
    def size_is_deferred(self) -> bool:
        return self.size is None and not self.is_final

    @property
    def is_complete(self) -> bool:
        return self.size is not None and self.offset == self.size


@runtime_checkable
class Store(Protocol):
    async def create(self, upload: NewUpload) -> UploadInfo:
        """Create an empty upload; the id is new (the handler made it)."""

    async def get_info(self, upload_id: str) -> UploadInfo:
        """Raise UploadNotFound when there is no such upload."""

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[Buffer],
        accept: Callable[[], bool] | None = None,
    ) -> int:
        """Store `chunks` at `offset` as they arrive and return the new offset.

        Whatever arrives is kept, even when the stream ends early or raises, unless
        `accept` is given: then the bytes of this call are kept only if the stream ended
        normally and `accept()` returns True, otherwise they are discarded and the
        offset stays where it was.
        """

    def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield the stored bytes in [start, end)."""


@runtime_checkable
class Terminater(Protocol):
    async def terminate(self, upload_id: str) -> None:
        """Remove the upload and all its bytes."""


@runtime_checkable
class LengthDeferrer(Protocol):
    async def declare_length(self, upload_id: str, size: int) -> UploadInfo: ...


@runtime_checkable
class Concater(Protocol):
    async def concatenate(self, final_id: str, partial_ids: tuple[str, ...]) -> UploadInfo:
        """Fill the final upload with the partials' bytes, in order, and set its size."""

    async def add_waiting_final(self, partial_id: str, final_id: str) -> None:
        """Remember that `final_id` completes when `partial_id` does."""


@runtime_checkable
class Lister(Protocol):
    def list_uploads(self) -> AsyncIterator[str]:
        """Every upload id in the store, for the expiry sweep."""


@runtime_checkable
class LeftoverSweeper(Protocol):
    async def abort_abandoned(self, older_than: float) -> int:
        """Remove what interrupted or crashed uploads left behind (e.g. multipart uploads no
        upload names) older than `older_than` seconds; return how many things went."""
