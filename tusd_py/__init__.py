"""tusd_py: a resumable-upload server speaking tus 1.0 and the IETF resumable-upload draft, as an ASGI app."""

from typing import TYPE_CHECKING, Any

from .app import create_app
from .handler import TusHandler, TusOptions
from .locks import FileLocker, Locker, LockTimeout, LockUnavailable, MemoryLocker
from .protocol import TusError
from .stores import FileStore, NewUpload, Store, UploadInfo, UploadNotFound

if TYPE_CHECKING:
    from .locks.redis import RedisLocker
    from .stores.s3 import S3Store

__all__ = [
    "FileLocker",
    "FileStore",
    "LockTimeout",
    "LockUnavailable",
    "Locker",
    "MemoryLocker",
    "NewUpload",
    "RedisLocker",
    "S3Store",
    "Store",
    "TusError",
    "TusHandler",
    "TusOptions",
    "UploadInfo",
    "UploadNotFound",
    "create_app",
]


def __getattr__(name: str) -> Any:
    # Their client libraries take a noticeable time to import: only their users pay for it.
    if name == "S3Store":
        from .stores.s3 import S3Store

        return S3Store
    if name == "RedisLocker":
        from .locks.redis import RedisLocker

        return RedisLocker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
