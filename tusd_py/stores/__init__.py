"""Stores: where the bytes go."""

from typing import TYPE_CHECKING, Any

from .base import (
    Buffer,
    Concater,
    LeftoverSweeper,
    LengthDeferrer,
    Lister,
    NewUpload,
    Store,
    Terminater,
    UploadInfo,
    UploadNotFound,
)
from .file import FileStore

if TYPE_CHECKING:
    from .s3 import S3Store, S3Unavailable

__all__ = [
    "Buffer",
    "Concater",
    "FileStore",
    "LeftoverSweeper",
    "LengthDeferrer",
    "Lister",
    "NewUpload",
    "S3Store",
    "S3Unavailable",
    "Store",
    "Terminater",
    "UploadInfo",
    "UploadNotFound",
]


def __getattr__(name: str) -> Any:
    # The S3 client library takes half a second to import: only S3 users pay for it.
    if name in ("S3Store", "S3Unavailable"):
        from . import s3

        return getattr(s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
