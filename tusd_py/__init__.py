"""tusd_py: a resumable-upload server speaking tus 1.0, as an ASGI app."""

from .app import create_app
from .handler import TusHandler, TusOptions
from .locks import FileLocker, Locker, LockTimeout, MemoryLocker
from .protocol import TusError
from .stores import FileStore, NewUpload, Store, UploadInfo, UploadNotFound

__all__ = [
    "FileLocker",
    "FileStore",
    "LockTimeout",
    "Locker",
    "MemoryLocker",
    "NewUpload",
    "Store",
    "TusError",
    "TusHandler",
    "TusOptions",
    "UploadInfo",
    "UploadNotFound",
    "create_app",
]
