"""create_app: the tus endpoint composed from a store, a locker and options."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from .handler import TusHandler, TusOptions
from .hooks import Hooks, HookType, Outbox
from .hooks.receivers import HookCallable
from .locks import Locker, MemoryLocker
from .stores import FileStore, Store
from .telemetry import Metrics

TUS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Disposition",
    "Content-Type",
    "Origin",
    "Tus-Resumable",
    "Upload-Checksum",
    "Upload-Complete",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Upload-Draft-Interop-Version",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Offset",
    "X-HTTP-Method-Override",
    "X-Request-ID",
    "X-Requested-With",
]
TUS_RESPONSE_HEADERS = [
    "Accept-Patch",
    "Location",
    "Tus-Checksum-Algorithm",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Resumable",
    "Tus-Version",
    "Upload-Complete",
    "Upload-Concat",
    "Upload-Defer-Length",
    "Upload-Draft-Interop-Version",
    "Upload-Expires",
    "Upload-Length",
    "Upload-Limit",
    "Upload-Metadata",
    "Upload-Offset",
    "X-Request-ID",
]


def default_outbox_path(upload_dir: str | os.PathLike[str]) -> Path:
    return Path(upload_dir) / ".hooks" / "outbox.sqlite3"


def create_app(
    upload_dir: str | os.PathLike[str] = "./data",
    *,
    store: Store | None = None,
    locker: Locker | None = None,
    base_path: str = "/",
    max_size: int | None = None,
    behind_proxy: bool = False,
    cors_allow_origin: str | None = None,
    expire_after: float | None = 24 * 3600.0,
    read_timeout: float = 60.0,
    lock_timeout: float = 20.0,
    hooks: Hooks | Mapping[HookType | str, HookCallable] | None = None,
    metrics: Metrics | None = None,
) -> ASGIApp:
    """Build the tus ASGI app.

    By default uploads live in `upload_dir` (a FileStore) and are locked in memory, which
    is right for one process; pass a `FileLocker` when several processes share the
    directory. `cors_allow_origin` is a regular expression of allowed origins, or '*'.

    `hooks` is a `Hooks` object, or a mapping of event name to async callable; post-events
    of the latter go through a durable outbox in `<upload_dir>/.hooks/outbox.sqlite3`.
    """
    handler = build_handler(
        upload_dir,
        store=store,
        locker=locker,
        base_path=base_path,
        max_size=max_size,
        behind_proxy=behind_proxy,
        expire_after=expire_after,
        read_timeout=read_timeout,
        lock_timeout=lock_timeout,
        hooks=hooks,
        metrics=metrics,
    )
    return with_cors(handler, cors_allow_origin)


def build_handler(
    upload_dir: str | os.PathLike[str] = "./data",
    *,
    store: Store | None = None,
    locker: Locker | None = None,
    base_path: str = "/",
    max_size: int | None = None,
    behind_proxy: bool = False,
    expire_after: float | None = 24 * 3600.0,
    read_timeout: float = 60.0,
    lock_timeout: float = 20.0,
    hooks: Hooks | Mapping[HookType | str, HookCallable] | None = None,
    metrics: Metrics | None = None,
) -> TusHandler:
    """The tus handler itself (create_app without CORS), for composing larger apps."""
    if hooks is not None and not isinstance(hooks, Hooks):
        hooks = Hooks.from_callables(hooks, outbox=Outbox(default_outbox_path(upload_dir)))
    return TusHandler(
        store if store is not None else FileStore(Path(upload_dir)),
        locker if locker is not None else MemoryLocker(timeout=lock_timeout),
        TusOptions(
            base_path=base_path,
            max_size=max_size or None,
            behind_proxy=behind_proxy,
            expire_after=expire_after or None,
            read_timeout=read_timeout,
        ),
        hooks,
        metrics,
    )


def with_cors(app: ASGIApp, cors_allow_origin: str | None) -> ASGIApp:
    """CORS for browsers on other origins: tus headers allowed and exposed."""
    if cors_allow_origin is None:
        return app
    return CORSMiddleware(
        app,
        allow_origins=["*"] if cors_allow_origin == "*" else [],
        allow_origin_regex=None if cors_allow_origin == "*" else cors_allow_origin,
        allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=TUS_REQUEST_HEADERS,
        expose_headers=TUS_RESPONSE_HEADERS,
        max_age=86400,
    )
