"""The store and the locker a ServeConfig names: local disk and memory by default,
S3-compatible storage and Redis locks when several instances share the uploads."""

from __future__ import annotations

from pathlib import Path

from .config import ServeConfig
from .locks import FileLocker, Locker, MemoryLocker
from .stores import FileStore, Store


def build_store(config: ServeConfig) -> Store:
    if config.s3_bucket is None:
        return FileStore(Path(config.upload_dir))
    # Imported here: a server on local disk never loads the S3 client.
    from .stores.s3 import S3Store

    return S3Store(
        config.s3_bucket,
        prefix=config.s3_prefix,
        endpoint_url=config.s3_endpoint,
        region=config.s3_region,
        part_size=config.s3_part_size,
        path_style=config.s3_path_style,
    )


def build_locker(config: ServeConfig) -> Locker:
    choice = config.locker or ("file" if config.workers > 1 else "memory")
    if choice == "memory":
        return MemoryLocker(timeout=config.lock_timeout)
    if choice == "file":
        return FileLocker(Path(config.upload_dir) / ".locks", timeout=config.lock_timeout)
    from .locks.redis import RedisLocker

    return RedisLocker(choice, timeout=config.lock_timeout, expiry=config.locker_expiry)
