"""The ASGI application: the only layer that knows HTTP.

It parses a request's headers with the sans-I/O `protocol` package, routes it to the
protocol it speaks, and turns whatever went wrong into that protocol's answer. It
speaks tus 1.0 (`tus_verbs.py`); a request naming the IETF draft's interop version goes
to `draft.py`. Both take their locks, store and hooks through the same steps
(`steps.py`), so neither knows how a store keeps bytes.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, replace

from starlette.types import Message, Receive, Scope, Send

from . import protocol as p
from .draft import DraftHandler
from .exchange import Reply, Request
from .expiry import ExpirySweeper
from .hooks import HookFailed, Hooks, HookType
from .hooks.events import RequestSnapshot
from .locks import Locker, LockTimeout, LockUnavailable
from .protocol import draft as d
from .steps import UploadSteps, ignore_release
from .stores import Lister, Store, Terminater, UploadInfo, UploadNotFound
from .telemetry import MeteredLocker, Metrics
from .tus_verbs import TusVerbs

log = logging.getLogger("tusd_py")

# Headers, all told, beyond this size are refused with 431 before any work is done.
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class TusOptions:
    """How the tus endpoint behaves; every field has a `tusd-py serve` flag."""

    base_path: str = "/"
    max_size: int | None = None
    behind_proxy: bool = False
    expire_after: float | None = 24 * 3600.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        path = "/" + self.base_path.strip("/") + "/"
        object.__setattr__(self, "base_path", path.replace("//", "/"))


class TusHandler:
    """An ASGI app serving tus 1.0.0 under `options.base_path`, and beside it the IETF
    resumable uploads draft: a request naming an interop version speaks the draft."""

    def __init__(
        self,
        store: Store,
        locker: Locker,
        options: TusOptions | None = None,
        hooks: Hooks | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if metrics is None:
            metrics = hooks.metrics if hooks is not None and hooks.metrics is not None else Metrics()
        self.metrics = metrics
        if hooks is not None:
            if hooks.metrics is None:
                hooks.metrics = metrics
            if hooks.outbox is not None:
                metrics.watch_outbox(hooks.outbox.pending)
        self.store = store
        self._locker = locker
        self.locker: Locker = MeteredLocker(locker, metrics)
        self.options = _within_store_limit(options or TusOptions(), store)
        self.hooks = hooks
        self._sweeper: ExpirySweeper | None = None
        if self.options.expire_after and isinstance(store, Lister) and isinstance(store, Terminater):
            self._sweeper = ExpirySweeper(store, locker, self.options.expire_after, on_expired=self._expired)
        self._steps = UploadSteps(store, self.locker, self.options, hooks, metrics, expiring=self._sweeper is not None)
        if hooks is not None:
            hooks.on_stop_upload(self._steps.stop_upload)
        # Each protocol's verbs, on the same store, locks and hooks; chosen per request.
        self._tus = TusVerbs(self._steps)
        self._draft = DraftHandler(self._steps)

    @property
    def extensions(self) -> list[str]:
        return self._tus.extensions

    # -- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # A mounted sub-app never sees lifespan events, so background work also starts here.
        self.start_background()
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        headers, header_bytes = _read_headers(scope)
        # Chosen per request: each protocol answers its own requests, refusals included.
        speaks = d.protocol_of(headers)
        refuse = self._draft.error_reply if speaks == d.DRAFT else _error_reply
        try:
            reply = await self._dispatch(scope, receive, headers, header_bytes, speaks)
        except p.TusError as error:
            reply = refuse(error)
        except UploadNotFound:
            reply = refuse(p.TusError(404, "upload not found"))
        except LockTimeout:
            reply = refuse(p.TusError(423, "upload is locked by another request"))
        except LockUnavailable:
            reply = refuse(p.TusError(503, "lock service unavailable"))
        except HookFailed as error:
            reply = refuse(p.TusError(error.status, error.reason))
        except OSError as error:
            # Before Exception, which would catch it too: a full disk is 507, not 500.
            log.exception("storage error")
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                reply = refuse(p.TusError(507, "server storage is full"))
            else:
                reply = refuse(p.TusError(503, "storage unavailable"))
        except Exception:
            log.exception("unexpected error")
            reply = refuse(p.TusError(500, "internal server error"))
        try:
            await _send_reply(tracked_send, reply)
        except OSError:
            # The download's source failed mid-stream; the headers are gone already.
            log.exception("download aborted")
            if not started:
                await _send_reply(send, refuse(p.TusError(503, "storage unavailable")))
        if reply.status >= 400:
            self.metrics.tus_error(reply.status, reply.reason)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_background(self) -> None:
        if self._sweeper is not None:
            self._sweeper.start()
        if self.hooks is not None:
            self.hooks.start()

    async def terminate(self, upload_id: str) -> None:
        """End an upload from the application's side, as a DELETE would, without its hooks'
        say: a PATCH in flight is asked to let go (its bytes then go with the rest)."""
        if not isinstance(self.store, Terminater):
            raise p.TusError(405, "termination is not supported by this store")
        async with self.locker.hold(upload_id, ignore_release):
            info = await self.store.get_info(upload_id)
            await self.store.terminate(upload_id)
        self.metrics.upload_terminated()
        # No client request caused this: the event's request is an empty DELETE.
        await self._steps.notify(
            HookType.POST_TERMINATE, info, RequestSnapshot(method="DELETE", uri="", remote_addr="")
        )

    def drain(self) -> None:
        """End every body being received (and any that starts from now on) as soon as
        possible: their bytes are kept, their locks released, and each client is answered
        503 with the offset it can resume from."""
        self._steps.drain()

    async def _expired(self, info: UploadInfo) -> None:
        # Hooks hear of an expired upload as of any other termination, with no request.
        await self._steps.notify(
            HookType.POST_TERMINATE, info, RequestSnapshot(method="DELETE", uri="", remote_addr="")
        )

    async def aclose(self) -> None:
        """Stop the background work (expiry sweep, hook delivery; the outbox stays on disk),
        then close the store's and the locker's connections, if they keep any."""
        if self._sweeper is not None:
            await self._sweeper.stop()
        if self.hooks is not None:
            await self.hooks.close()
        for resource in (self.store, self._locker):
            close = getattr(resource, "aclose", None)
            if close is not None:
                await close()

    async def _dispatch(
        self, scope: Scope, receive: Receive, headers: dict[str, str], header_bytes: int, speaks: str
    ) -> Reply:
        method = scope["method"]
        override = headers.get("x-http-method-override")
        if method == "POST" and override:
            method = override.strip().upper()
        self.metrics.tus_request(method)
        if header_bytes > MAX_HEADER_BYTES:
            raise p.TusError(431, "request headers are too large")
        route = self._route(scope)
        if route is None:
            raise p.TusError(404, "not found")
        request = Request(scope, receive, headers, method)
        if speaks == d.DRAFT:
            return await self._draft.dispatch(request, route)
        return await self._tus.dispatch(request, route)

    def _route(self, scope: Scope) -> str | None:
        """'' for the creation endpoint, the id segment for an upload, None otherwise."""
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        base = self.options.base_path
        if path == base or path == base.rstrip("/"):
            return ""
        if not path.startswith(base):
            return None
        rest = path[len(base) :]
        return None if "/" in rest else rest


def _error_reply(error: p.TusError) -> Reply:
    all_headers = {"Content-Type": "text/plain; charset=utf-8"}
    for name, value in error.headers.items():
        # Header names are case-insensitive: a hook's "content-type" replaces ours.
        for existing in [k for k in all_headers if k.lower() == name.lower()]:
            del all_headers[existing]
        all_headers[name] = value
    return Reply(error.status, all_headers, (error.reason + "\n").encode("utf-8"), reason=error.reason)


def _read_headers(scope: Scope) -> tuple[dict[str, str], int]:
    """The request's fields by lowercase name (the last line of a repeated one wins), and
    how many bytes they take."""
    headers: dict[str, str] = {}
    total = 0
    for raw_name, raw_value in scope["headers"]:
        total += len(raw_name) + len(raw_value)
        headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
    return headers, total


async def _send_reply(send: Send, reply: Reply) -> None:
    raw = [(b"x-content-type-options", b"nosniff")]
    if reply.protocol == d.TUS:
        raw.insert(0, (b"tus-resumable", b"1.0.0"))
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    if reply.stream is None and "Content-Length" not in reply.headers and reply.status not in (204, 304):
        raw.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": raw})
    if reply.stream is None:
        await send({"type": "http.response.body", "body": reply.body})
        return
    async for block in reply.stream:
        await send({"type": "http.response.body", "body": block, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _within_store_limit(options: TusOptions, store: Store) -> TusOptions:
    """A store that cannot hold uploads past some length (S3: 5 TiB) lowers --max-size to
    it, so such uploads are refused at creation instead of failing near their end."""
    limit = getattr(store, "max_upload_size", None)
    if isinstance(limit, int) and (options.max_size is None or options.max_size > limit):
        return replace(options, max_size=limit)
    return options
