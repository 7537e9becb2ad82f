"""Stores: where the bytes go."""

from .base import (
    Buffer,
    Concater,
    LengthDeferrer,
    Lister,
    NewUpload,
    Store,
    Terminater,
    UploadInfo,
    UploadNotFound,
)
from .file import FileStore

__all__ = [
    "Buffer",
    "Concater",
    "FileStore",
    "LengthDeferrer",
    "Lister",
    "NewUpload",
    "Store",
    "Terminater",
    "UploadInfo",
    "UploadNotFound",
]
