"""The ASGI application: the only layer that knows HTTP.

It routes a request, parses its headers with the sans-I/O `protocol` package, takes the
upload's lock and drives the store. It knows nothing of how a store keeps bytes. It
speaks tus 1.0; a request naming the IETF draft's interop version goes to `draft.py`,
which uses the same shared steps (locking, appending a body, finishing with hooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from email.utils import formatdate

from starlette.types import Message, Receive, Scope, Send

from . import protocol as p
from .body import BodyReader
from .draft import DraftHandler
from .exchange import Reply, Request
from .expiry import ExpirySweeper
from .hooks import HookFailed, Hooks, HookType
from .hooks.events import HookEvent, HookResponse, HTTPResponse, RequestSnapshot, UploadSnapshot
from .locks import Locker, LockTimeout, LockUnavailable
from .protocol import draft as d
from .protocol.download import download_headers
from .stores import (
    Concater,
    LengthDeferrer,
    Lister,
    NewUpload,
    Store,
    Terminater,
    UploadInfo,
    UploadNotFound,
)
from .telemetry import MeteredLocker, Metrics, record_of

log = logging.getLogger("tusd_py")

# Headers, all told, beyond this size are refused with 431 before any work is done.
MAX_HEADER_BYTES = 64 * 1024

UPLOAD_METHODS = "OPTIONS, HEAD, PATCH, DELETE, GET"


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


# Checks (and may change) an upload under its lock, before or after its body is read.
Admit = Callable[[UploadInfo], Awaitable[UploadInfo]]


@dataclass(frozen=True)
class Received:
    """What a request's body did to an upload."""

    info: UploadInfo
    # This request stored the last byte: the upload is to be finished (hooks included).
    finished: bool
    # The body ended early, its bytes kept: what the client is told.
    interrupted: p.TusError | None = None


_INTERRUPTIONS = {
    "released": (400, "upload was interrupted by another request for it"),
    "timeout": (408, "no data received within the read timeout"),
    "overflow": (413, "body goes past the upload's length"),
    "stopped": (400, "upload has been stopped by the server"),
    "shutdown": (503, "server is shutting down"),
}


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
        # Set when the server shuts down: bodies still arriving are ended, their bytes kept.
        self._draining = False
        # The body being received per upload id, so a post-receive answer can stop it.
        self._receiving: dict[str, BodyReader] = {}
        self._stop_responses: dict[str, HTTPResponse] = {}
        self._background: set[asyncio.Task[None]] = set()
        if hooks is not None:
            hooks.on_stop_upload(self._stop_upload)
        self._sweeper: ExpirySweeper | None = None
        if self.options.expire_after and isinstance(store, Lister) and isinstance(store, Terminater):
            self._sweeper = ExpirySweeper(store, locker, self.options.expire_after, on_expired=self._expired)
        # The IETF draft's verbs, on the same store, locks and hooks; chosen per request.
        self._draft = DraftHandler(self)

    # -- what this server offers ------------------------------------------------------

    @property
    def extensions(self) -> list[str]:
        found = ["creation", "creation-with-upload"]
        if isinstance(self.store, LengthDeferrer):
            found.append("creation-defer-length")
        if isinstance(self.store, Terminater):
            found.append("termination")
        if self._sweeper is not None:
            found.append("expiration")
        found.append("checksum")
        if isinstance(self.store, Concater):
            found += ["concatenation", "concatenation-unfinished"]
        return found

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
        async with self.locker.hold(upload_id, _ignore):
            info = await self.store.get_info(upload_id)
            await self.store.terminate(upload_id)
        self.metrics.upload_terminated()
        # No client request caused this: the event's request is an empty DELETE.
        await self._notify(HookType.POST_TERMINATE, info, RequestSnapshot(method="DELETE", uri="", remote_addr=""))

    def drain(self) -> None:
        """End every body being received (and any that starts from now on) as soon as
        possible: their bytes are kept, their locks released, and each client is answered
        503 with the offset it can resume from."""
        self._draining = True
        for reader in list(self._receiving.values()):
            reader.stop("shutdown")

    async def _expired(self, info: UploadInfo) -> None:
        # Hooks hear of an expired upload as of any other termination, with no request.
        await self._notify(HookType.POST_TERMINATE, info, RequestSnapshot(method="DELETE", uri="", remote_addr=""))

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
        if route == "":
            if method == "OPTIONS":
                return self._options()
            if method == "POST":
                return await self._create(request)
            raise p.TusError(405, "method not allowed", {"Allow": "OPTIONS, POST"})
        upload_id = self._upload_id(scope, route)
        if method == "OPTIONS":
            return self._options()
        if method == "GET":
            return await self._download(request, upload_id)
        if method not in ("HEAD", "PATCH", "DELETE"):
            raise p.TusError(405, "method not allowed", {"Allow": UPLOAD_METHODS})
        p.check_tus_resumable(headers.get("tus-resumable"))
        if method == "HEAD":
            return await self._head(request, upload_id)
        if method == "PATCH":
            return await self._patch(request, upload_id)
        await self._terminate(request, upload_id)
        return Reply(204)

    @staticmethod
    def _upload_id(scope: Scope, route: str) -> str:
        upload_id = p.check_upload_id(route)
        record = record_of(scope)
        if record is not None:
            record.upload_id = upload_id
        return upload_id

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

    # -- verbs ------------------------------------------------------------------------

    def _options(self) -> Reply:
        headers = {
            "Tus-Version": p.TUS_VERSION,
            "Tus-Extension": ",".join(self.extensions),
            "Tus-Checksum-Algorithm": ",".join(p.ALGORITHMS),
        }
        if self.options.max_size:
            headers["Tus-Max-Size"] = str(self.options.max_size)
        return Reply(204, headers)

    async def _create(self, request: Request) -> Reply:
        h = request.headers
        p.check_tus_resumable(h.get("tus-resumable"))
        concat = p.parse_upload_concat(h.get("upload-concat"))
        if concat is not None and not isinstance(self.store, Concater):
            raise p.TusError(400, "concatenation is not supported by this store")
        is_final = concat is not None and concat.is_final
        length = p.parse_creation_length(h.get("upload-length"), h.get("upload-defer-length"), is_final=is_final)
        if length.deferred and not isinstance(self.store, LengthDeferrer):
            raise p.TusError(400, "deferred length is not supported by this store")
        self._check_max_size(length.length)
        metadata = p.decode_metadata(h.get("upload-metadata"))
        partials: tuple[UploadInfo, ...] = ()
        if concat is not None and concat.is_final:
            partials = await self._final_partials(concat)
        has_body = p.headers.is_offset_content_type(h.get("content-type"))
        if has_body and is_final:
            raise p.TusError(400, "a final upload cannot carry a body")
        upload = NewUpload(
            id=p.new_upload_id(),
            size=length.length,
            metadata=metadata,
            is_partial=concat is not None and concat.is_partial,
            is_final=is_final,
            partial_uploads=tuple(u.id for u in partials),
        )
        checksum = p.parse_checksum(h.get("upload-checksum")) if has_body else None
        info, headers = await self._open(upload, request)
        if is_final:
            info = await self._link_final(info, partials, request)
        else:
            try:
                interrupted = None
                if has_body:
                    admit = self._tus_admit(request, 0, None)
                    received = await self._receive(info.id, request, admit, checksum=checksum)
                    info, finished, interrupted = received.info, received.finished, received.interrupted
                else:
                    # An empty upload is finished the moment it exists.
                    finished = info.is_complete
                if finished:
                    headers.update(await self._finish(info, request))
                if interrupted is not None:
                    raise interrupted
            except (p.TusError, HookFailed) as error:
                # The upload exists: the client needs its URL to resume whatever went wrong.
                if isinstance(error, HookFailed):
                    error = p.TusError(error.status, error.reason)
                error.headers.update(headers)
                raise error from None
        if not is_final:
            # Not required without a body, but clients that always send one expect it.
            headers["Upload-Offset"] = str(info.offset)
        headers.update(self._expiry_header(info))
        return Reply(201, headers)

    async def _open(self, upload: NewUpload, request: Request) -> tuple[UploadInfo, dict[str, str]]:
        """Create the upload as the pre-create hook allows, then tell post-create.

        Returns it and the headers of the answer so far: the hook's and Location.
        """
        headers: dict[str, str] = {}
        if self._wants(HookType.PRE_CREATE):
            upload, headers = await self._pre_create(upload, request)
        try:
            info = await self.store.create(upload)
        except FileExistsError:
            raise p.TusError(409, "an upload with this id exists already") from None
        self.metrics.upload_created()
        record = record_of(request.scope)
        if record is not None:
            record.upload_id = info.id
        headers["Location"] = request.upload_url(self.options, info.id)
        await self._notify(HookType.POST_CREATE, info, request)
        return info, headers

    async def _pre_create(self, upload: NewUpload, request: Request) -> tuple[NewUpload, dict[str, str]]:
        """Ask the pre-create hook; apply its changes or answer with its refusal."""
        snapshot = UploadSnapshot(
            id="",
            size=upload.size,
            offset=0,
            metadata=upload.metadata,
            size_is_deferred=upload.size is None and not upload.is_final,
            is_partial=upload.is_partial,
            is_final=upload.is_final,
            partial_uploads=upload.partial_uploads,
        )
        response = await self._ask(HookType.PRE_CREATE, snapshot, request)
        if response.reject_upload:
            raise _hook_refusal(response.http_response, 400, "upload rejected by server")
        changes = response.change_file_info
        if changes.id is not None:
            if not p.is_valid_upload_id(changes.id):
                raise HookFailed(502, "pre-create hook chose an invalid upload id")
            upload = replace(upload, id=changes.id)
        if changes.metadata is not None:
            upload = replace(upload, metadata=dict(changes.metadata))
        return upload, _hook_headers(response.http_response)

    async def _head(self, request: Request, upload_id: str) -> Reply:
        async with self.locker.hold(upload_id, _ignore, requested_at=request.arrived_at):
            info = await self._live_info(upload_id, d.TUS)
            if info.is_final and not info.is_complete:
                info = await self._complete_final(info, request)
        headers = {"Cache-Control": "no-store"}
        if not info.is_final or info.is_complete:
            headers["Upload-Offset"] = str(info.offset)
        if info.size is not None:
            headers["Upload-Length"] = str(info.size)
        elif info.size_is_deferred:
            headers["Upload-Defer-Length"] = "1"
        if info.metadata:
            headers["Upload-Metadata"] = p.encode_metadata(info.metadata)
        if info.is_partial:
            headers["Upload-Concat"] = "partial"
        elif info.is_final:
            urls = (request.upload_url(self.options, pid) for pid in info.partial_uploads)
            headers["Upload-Concat"] = "final;" + " ".join(urls)
        headers.update(self._expiry_header(info))
        return Reply(200, headers)

    async def _patch(self, request: Request, upload_id: str) -> Reply:
        h = request.headers
        p.check_patch_content_type(h.get("content-type"))
        offset = p.parse_upload_offset(h.get("upload-offset"))
        declared_length = p.parse_upload_length(h.get("upload-length"))
        checksum = p.parse_checksum(h.get("upload-checksum"))
        admit = self._tus_admit(request, offset, declared_length)
        received = await self._receive(upload_id, request, admit, checksum=checksum)
        info = received.info
        headers = {}
        if received.finished:
            headers.update(await self._finish_partial(info, request))
        if received.interrupted is not None:
            raise received.interrupted
        headers["Upload-Offset"] = str(info.offset)
        headers.update(self._expiry_header(info))
        return Reply(204, headers)

    def _tus_admit(self, request: Request, offset: int, declared_length: int | None) -> Admit:
        async def admit(info: UploadInfo) -> UploadInfo:
            if info.is_final:
                raise p.TusError(403, "a final upload cannot be modified")
            if offset != info.offset:
                raise p.TusError(409, f"Upload-Offset {offset} does not match the upload's offset {info.offset}")
            if declared_length is not None:
                info = await self._declare_length(info, declared_length, request)
            return info

        return admit

    async def _finish_partial(self, info: UploadInfo, request: Request) -> dict[str, str]:
        """Finish an upload, then the final uploads that were waiting for it."""
        headers = await self._finish(info, request)
        for final_id in info.waiting_finals:
            # This partial's bytes are stored whatever becomes of a final that waits on it.
            try:
                async with self.locker.hold(final_id, _ignore):
                    await self._complete_final(await self.store.get_info(final_id), request)
            except (UploadNotFound, LockTimeout, p.TusError) as error:
                log.info("final upload %s not completed: %s", final_id, error)
        return headers

    async def _terminate(self, request: Request, upload_id: str, protocol: str = d.TUS) -> None:
        if not isinstance(self.store, Terminater):
            raise p.TusError(405, "termination is not supported by this store", {"Allow": UPLOAD_METHODS})
        async with self.locker.hold(upload_id, _ignore, requested_at=request.arrived_at):
            info = await self.store.get_info(upload_id)
            _check_protocol(info, protocol)
            if self._wants(HookType.PRE_TERMINATE):
                response = await self._ask(HookType.PRE_TERMINATE, _snapshot(info), request)
                if response.reject_termination:
                    raise _hook_refusal(response.http_response, 400, "upload termination rejected by server")
            await self.store.terminate(upload_id)
        self.metrics.upload_terminated()
        await self._notify(HookType.POST_TERMINATE, info, request)

    async def _download(self, request: Request, upload_id: str) -> Reply:
        info = await self.store.get_info(upload_id)
        if not info.is_complete or info.size is None:
            raise p.TusError(409, "upload is not complete")
        size = info.size
        headers = download_headers(info.metadata)
        byte_range = p.parse_range(request.headers.get("range"), size)
        status, start, end = 200, 0, size
        if byte_range is not None:
            status, start, end = 206, byte_range[0], byte_range[1] + 1
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        stream = self.store.read(upload_id, start, end) if end > start else None
        return Reply(status, headers, stream=stream)

    # -- shared steps -----------------------------------------------------------------

    async def _live_info(self, upload_id: str, protocol: str) -> UploadInfo:
        info = await self.store.get_info(upload_id)
        _check_protocol(info, protocol)
        if self._is_expired(info):
            raise p.TusError(410, "upload has expired")
        return info

    def _is_expired(self, info: UploadInfo) -> bool:
        expire_after = self.options.expire_after
        if not expire_after or info.is_complete:
            return False
        return info.modified_at + expire_after < time.time()

    def _expiry_header(self, info: UploadInfo) -> dict[str, str]:
        if self._sweeper is None or info.is_complete:
            return {}
        assert self.options.expire_after is not None
        return {"Upload-Expires": formatdate(info.modified_at + self.options.expire_after, usegmt=True)}

    def _check_max_size(self, size: int | None) -> None:
        if size is not None and self.options.max_size and size > self.options.max_size:
            raise p.TusError(413, f"upload is larger than the maximum size of {self.options.max_size} bytes")

    async def _declare_length(self, info: UploadInfo, length: int, request: Request) -> UploadInfo:
        if not info.size_is_deferred:
            if length != info.size:
                raise p.TusError(400, "Upload-Length cannot be changed once set")
            return info
        if length < info.offset:
            raise p.TusError(400, "Upload-Length is smaller than the bytes already stored")
        self._check_max_size(length)
        # A request refused for its body must not leave its length declared.
        content_length = p.parse_content_length(request.headers.get("content-length"))
        if content_length is not None and info.offset + content_length > length:
            raise p.TusError(413, "body goes past the upload's length")
        assert isinstance(self.store, LengthDeferrer)
        return await self.store.declare_length(info.id, length)

    async def _receive(
        self,
        upload_id: str,
        request: Request,
        admit: Admit,
        *,
        protocol: str = d.TUS,
        checksum: p.Checksum | None = None,
        conclude: Admit | None = None,
    ) -> Received:
        """Under the upload's lock: let `admit` check (and may change) the upload, stream
        the body in, report progress; once the whole body is in, `conclude` may change
        the upload again (the draft declares the length then).

        A body that ended early keeps its bytes: the result says why it ended, and still
        says whether this request finished the upload, so that no finish goes unheard.
        """
        reader = BodyReader(request.receive, read_timeout=self.options.read_timeout)
        progress: list[asyncio.Task[None]] = []
        async with self.locker.hold(upload_id, lambda: reader.stop("released"), requested_at=request.arrived_at):
            info = await self._live_info(upload_id, protocol)
            was_complete = info.is_complete
            info = await admit(info)
            offset = info.offset
            if self._wants(HookType.POST_RECEIVE):
                assert self.hooks is not None
                start = info

                def report(received: int) -> None:
                    snapshot = replace(start, offset=offset + received)
                    progress.append(asyncio.ensure_future(self._notify(HookType.POST_RECEIVE, snapshot, request)))

                reader.on_progress(report, self.hooks.progress_interval)
            rejected: list[HTTPResponse] = []
            if self._wants(HookType.FIRST_BYTES):
                await self._watch_first_bytes(info, request, reader, rejected)
            self._receiving[info.id] = reader
            if self._draining:
                reader.stop("shutdown")
            interrupted: p.TusError | None = None
            try:
                info = await self._append(info, offset, request, reader, checksum)
                head = reader.unseen_head()
                if head is not None and info.is_complete:
                    # The whole upload is shorter than the head the hook asked for.
                    await self._judge_first_bytes(info, request, head, reader, rejected)
                if rejected:
                    raise _hook_refusal(rejected[0], 400, "upload rejected by server")
                interrupted = self._interruption(reader, info)
                if reader.complete and conclude is not None:
                    info = await conclude(info)
            except p.TusError:
                if rejected:
                    await self._reject_upload(info, request)
                    raise _hook_refusal(rejected[0], 400, "upload rejected by server") from None
                raise
            finally:
                del self._receiving[info.id]
                self._stop_responses.pop(info.id, None)
                if progress:
                    await asyncio.gather(*progress, return_exceptions=True)
                if self._wants(HookType.POST_RECEIVE) and not rejected:
                    await self._notify(HookType.POST_RECEIVE, await self.store.get_info(info.id), request)
        return Received(info, info.is_complete and not was_complete, interrupted)

    def _interruption(self, reader: BodyReader, info: UploadInfo) -> p.TusError | None:
        """Why the body ended early, as the client is told; None if it did not, or if the
        client is gone and hears nothing."""
        if reader.interrupted is None or reader.interrupted == "disconnect":
            return None
        stop_response = self._stop_responses.get(info.id)
        if stop_response is not None:
            return _hook_refusal(stop_response, 400, "upload has been stopped by the server")
        status, reason = _INTERRUPTIONS.get(reader.interrupted, (400, reader.interrupted))
        return p.TusError(status, reason, {"Upload-Offset": str(info.offset)})

    async def _watch_first_bytes(
        self, info: UploadInfo, request: Request, reader: BodyReader, rejected: list[HTTPResponse]
    ) -> None:
        """Arrange the first-bytes hook for this body if the upload's head is still arriving."""
        assert self.hooks is not None
        need = self.hooks.first_bytes_length
        if info.size is not None:
            need = min(need, info.size)
        if info.offset >= need or need == 0:
            return
        prefix = b"".join([block async for block in self.store.read(info.id, 0, info.offset)])

        async def judge(head: bytes) -> None:
            await self._judge_first_bytes(info, request, head, reader, rejected)

        reader.watch_head(prefix, need, judge)

    async def _judge_first_bytes(
        self, info: UploadInfo, request: Request, head: bytes, reader: BodyReader, rejected: list[HTTPResponse]
    ) -> None:
        assert self.hooks is not None
        event = HookEvent(HookType.FIRST_BYTES, _snapshot(info), request.snapshot(), head=head)
        response = await self.hooks.call(event)
        if response.reject_upload:
            rejected.append(response.http_response)
        if response.reject_upload or response.stop_upload:
            self._stop_responses[info.id] = response.http_response
            reader.stop("stopped")

    async def _reject_upload(self, info: UploadInfo, request: Request) -> None:
        """A first-bytes hook refused the content: its bytes go. The lock is held."""
        if isinstance(self.store, Terminater):
            with contextlib.suppress(UploadNotFound):
                await self.store.terminate(info.id)
            await self._notify(HookType.POST_TERMINATE, info, request)

    def _stop_upload(self, upload_id: str, response: HTTPResponse) -> None:
        reader = self._receiving.get(upload_id)
        if reader is not None:
            self._stop_responses[upload_id] = response
            reader.stop("stopped")
            return
        # The PATCH may be running in another process: asking for its lock ends it there
        # (its client hears "interrupted" rather than the hook's answer).
        task = asyncio.get_running_loop().create_task(self._interrupt_elsewhere(upload_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _interrupt_elsewhere(self, upload_id: str) -> None:
        with contextlib.suppress(LockTimeout):
            async with self.locker.hold(upload_id, _ignore):
                pass

    async def _append(
        self, info: UploadInfo, offset: int, request: Request, reader: BodyReader, checksum: p.Checksum | None
    ) -> UploadInfo:
        """Stream the request body into the store at `offset` and return the new info."""
        content_length = p.parse_content_length(request.headers.get("content-length"))
        if info.size is not None:
            limit: int | None = info.size - offset
        elif self.options.max_size:
            limit = self.options.max_size - offset
        else:
            limit = None
        if content_length is not None and limit is not None and content_length > limit:
            raise p.TusError(413, "body goes past the upload's length")
        reader.configure(limit=limit, hasher=checksum.hasher() if checksum else None)
        accept: Callable[[], bool] | None = None
        if checksum is not None:
            accept = lambda: reader.digest() == checksum.digest  # noqa: E731
        try:
            new_offset = await self.store.append(info.id, offset, reader, accept)
        finally:
            # Counted once per request, not per buffer: the hot path stays untouched.
            self.metrics.received(reader.received)
            record = record_of(request.scope)
            if record is not None:
                record.bytes_received = (record.bytes_received or 0) + reader.received
        if checksum is not None and reader.interrupted is None and reader.digest() != checksum.digest:
            raise p.TusError(p.CHECKSUM_MISMATCH, "checksum mismatch: the body was discarded")
        return await self.store.get_info(info.id) if new_offset != offset else info

    async def _final_partials(self, concat: p.Concat) -> tuple[UploadInfo, ...]:
        partials = []
        for url in concat.partial_urls:
            partial_id = p.upload_id_from_url(url)
            try:
                info = await self.store.get_info(p.check_upload_id(partial_id))
            except (UploadNotFound, p.TusError):
                raise p.TusError(400, f"partial upload {partial_id!r} not found") from None
            if not info.is_partial:
                raise p.TusError(400, f"upload {partial_id!r} is not a partial upload")
            partials.append(info)
        sizes = [u.size for u in partials]
        if all(s is not None for s in sizes):
            self._check_max_size(sum(s for s in sizes if s is not None))
        return tuple(partials)

    async def _link_final(self, final: UploadInfo, partials: tuple[UploadInfo, ...], request: Request) -> UploadInfo:
        assert isinstance(self.store, Concater)
        for partial in partials:
            if not partial.is_complete:
                await self.store.add_waiting_final(partial.id, final.id)
        # A partial may have finished while we linked; look again now that all are linked.
        async with self.locker.hold(final.id, _ignore):
            return await self._complete_final(final, request)

    async def _complete_final(self, final: UploadInfo, request: Request) -> UploadInfo:
        """Concatenate the final upload if every partial is finished. Hold its lock."""
        if final.is_complete:
            return final
        try:
            partials = [await self.store.get_info(pid) for pid in final.partial_uploads]
        except UploadNotFound:
            # A partial was terminated or expired: this final can never complete, and
            # expires in its turn.
            return final
        if not all(u.is_complete for u in partials):
            return final
        # Checked again now: a partial with a deferred length was unknown at creation.
        self._check_max_size(sum(u.offset for u in partials))
        assert isinstance(self.store, Concater)
        final = await self.store.concatenate(final.id, final.partial_uploads)
        self.metrics.upload_finished()
        await self._notify(HookType.POST_FINISH, final, request)
        return final

    # -- hooks ------------------------------------------------------------------------

    def _wants(self, hook_type: HookType) -> bool:
        return self.hooks is not None and self.hooks.wants(hook_type)

    async def _ask(self, hook_type: HookType, upload: UploadSnapshot, request: Request) -> HookResponse:
        assert self.hooks is not None
        return await self.hooks.call(HookEvent(hook_type, upload, request.snapshot()))

    async def _notify(self, hook_type: HookType, info: UploadInfo, request: Request | RequestSnapshot) -> None:
        if self._wants(hook_type):
            assert self.hooks is not None
            snapshot = request.snapshot() if isinstance(request, Request) else request
            try:
                await self.hooks.notify(HookEvent(hook_type, _snapshot(info), snapshot))
            except Exception:
                # A non-blocking hook never changes the client's answer: its bytes are safe.
                log.exception("could not record the %s event", hook_type)

    async def _finish(self, info: UploadInfo, request: Request) -> dict[str, str]:
        """pre-finish may fail the request that stored the last byte; post-finish follows."""
        headers: dict[str, str] = {}
        if self._wants(HookType.PRE_FINISH):
            response = (await self._ask(HookType.PRE_FINISH, _snapshot(info), request)).http_response
            if response.status_code is not None and response.status_code >= 400:
                raise _hook_refusal(response, response.status_code, "upload refused by server")
            headers = _hook_headers(response)
        self.metrics.upload_finished()
        await self._notify(HookType.POST_FINISH, info, request)
        return headers


def _snapshot(info: UploadInfo) -> UploadSnapshot:
    return UploadSnapshot(
        id=info.id,
        size=info.size,
        offset=info.offset,
        metadata=info.metadata,
        size_is_deferred=info.size_is_deferred,
        is_partial=info.is_partial,
        is_final=info.is_final,
        partial_uploads=info.partial_uploads,
        storage=info.storage,
    )


def _hook_headers(response: HTTPResponse) -> dict[str, str]:
    return {k: v for k, v in response.header.items() if k.lower() not in ("content-length", "transfer-encoding")}


def _hook_refusal(response: HTTPResponse, status: int, reason: str) -> p.TusError:
    """The hook's own status, body and headers when it gave them; ours otherwise."""
    return p.TusError(response.status_code or status, response.body or reason, _hook_headers(response))


def _check_protocol(info: UploadInfo, protocol: str) -> None:
    """An upload is served only by the protocol that created it: the two disagree on what
    completes an upload and on what their fields mean."""
    if info.protocol == protocol:
        return
    created_by = "tus 1.0" if info.protocol == d.TUS else "the resumable uploads draft"
    asked_by = "tus 1.0 (Tus-Resumable)" if protocol == d.TUS else "the draft (Upload-Draft-Interop-Version)"
    raise p.TusError(400, f"this upload was created with {created_by}; it cannot be used with {asked_by}")


def _ignore() -> None:
    """Requests that hold a lock only briefly need not react to release requests."""


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
