"""The steps tus 1.0 and the IETF draft share: each takes the upload's lock, drives the
store and calls the hooks in one order, so that both protocols behave alike where they
agree. What differs between them (fields, answers, what completes an upload) stays in
their verb modules, which pass it in (`admit`, `conclude`, `protocol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from starlette.types import Scope

from . import protocol as p
from .body import RELEASED, BodyReader
from .exchange import Reply, Request
from .hook_calls import HookCalls, hook_headers, hook_refusal, snapshot_of
from .hooks import HookFailed, Hooks, HookType
from .hooks.events import HookEvent, HTTPResponse, RequestSnapshot, UploadSnapshot
from .locks import Locker, LockTimeout
from .protocol import draft as d
from .protocol.download import download_headers
from .stores import NewUpload, Store, Terminater, UploadInfo, UploadNotFound
from .telemetry import Metrics, record_of

if TYPE_CHECKING:
    from .handler import TusOptions

UPLOAD_METHODS = "OPTIONS, HEAD, PATCH, DELETE, GET"

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
    RELEASED: (400, "upload was interrupted by another request for it"),
    "timeout": (408, "no data received within the read timeout"),
    "overflow": (413, "body goes past the upload's length"),
    "stopped": (400, "upload has been stopped by the server"),
    "shutdown": (503, "server is shutting down"),
}


class UploadSteps:
    """Lock -> store -> hooks, once for both protocols."""

    def __init__(
        self, store: Store, locker: Locker, options: TusOptions, hooks: Hooks | None, metrics: Metrics, expiring: bool
    ) -> None:
        self.store = store
        self.locker = locker
        self.options = options
        self.hooks = hooks
        self.metrics = metrics
        # Whether unfinished uploads are swept away once expired (and clients told when).
        self.expiring = expiring
        self.calls = HookCalls(hooks)
        # Set when the server shuts down: bodies still arriving are ended, their bytes kept.
        self._draining = False
        # The body being received per upload id, so a post-receive answer can stop it.
        self._receiving: dict[str, BodyReader] = {}
        self._stop_responses: dict[str, HTTPResponse] = {}
        self._background: set[asyncio.Task[None]] = set()

    @staticmethod
    def upload_id(scope: Scope, route: str) -> str:
        upload_id = p.check_upload_id(route)
        record = record_of(scope)
        if record is not None:
            record.upload_id = upload_id
        return upload_id

    async def notify(self, hook_type: HookType, info: UploadInfo, request: Request | RequestSnapshot) -> None:
        await self.calls.notify(hook_type, info, request)

    # -- creation ---------------------------------------------------------------------

    async def open(self, upload: NewUpload, request: Request) -> tuple[UploadInfo, dict[str, str]]:
        """Create the upload as the pre-create hook allows, then tell post-create.

        Returns it and the headers of the answer so far: the hook's and Location.
        """
        headers: dict[str, str] = {}
        if self.calls.wants(HookType.PRE_CREATE):
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
        await self.notify(HookType.POST_CREATE, info, request)
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
        response = await self.calls.ask(HookType.PRE_CREATE, snapshot, request)
        if response.reject_upload:
            raise hook_refusal(response.http_response, 400, "upload rejected by server")
        changes = response.change_file_info
        if changes.id is not None:
            if not p.is_valid_upload_id(changes.id):
                raise HookFailed(502, "pre-create hook chose an invalid upload id")
            upload = replace(upload, id=changes.id)
        if changes.metadata is not None:
            upload = replace(upload, metadata=dict(changes.metadata))
        return upload, hook_headers(response.http_response)

    # -- an upload's life -------------------------------------------------------------

    async def live_info(self, upload_id: str, protocol: str) -> UploadInfo:
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

    async def finish(self, info: UploadInfo, request: Request) -> dict[str, str]:
        """pre-finish may fail the request that stored the last byte; post-finish follows."""
        headers: dict[str, str] = {}
        if self.calls.wants(HookType.PRE_FINISH):
            response = (await self.calls.ask(HookType.PRE_FINISH, snapshot_of(info), request)).http_response
            if response.status_code is not None and response.status_code >= 400:
                raise hook_refusal(response, response.status_code, "upload refused by server")
            headers = hook_headers(response)
        self.metrics.upload_finished()
        await self.notify(HookType.POST_FINISH, info, request)
        return headers

    async def terminate(self, request: Request, upload_id: str, protocol: str = d.TUS) -> None:
        if not isinstance(self.store, Terminater):
            raise p.TusError(405, "termination is not supported by this store", {"Allow": UPLOAD_METHODS})
        async with self.locker.hold(upload_id, ignore_release, requested_at=request.arrived_at):
            info = await self.store.get_info(upload_id)
            _check_protocol(info, protocol)
            if self.calls.wants(HookType.PRE_TERMINATE):
                response = await self.calls.ask(HookType.PRE_TERMINATE, snapshot_of(info), request)
                if response.reject_termination:
                    raise hook_refusal(response.http_response, 400, "upload termination rejected by server")
            await self.store.terminate(upload_id)
        self.metrics.upload_terminated()
        await self.notify(HookType.POST_TERMINATE, info, request)

    async def download(self, request: Request, upload_id: str) -> Reply:
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

    # -- receiving a body -------------------------------------------------------------

    async def receive(
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
        async with self.locker.hold(upload_id, lambda: reader.stop(RELEASED), requested_at=request.arrived_at):
            info = await self.live_info(upload_id, protocol)
            was_complete = info.is_complete
            info = await admit(info)
            offset = info.offset
            if self.calls.wants(HookType.POST_RECEIVE):
                assert self.hooks is not None
                start = info

                def report(received: int) -> None:
                    snapshot = replace(start, offset=offset + received)
                    progress.append(asyncio.ensure_future(self.notify(HookType.POST_RECEIVE, snapshot, request)))

                reader.on_progress(report, self.hooks.progress_interval)
            rejected: list[HTTPResponse] = []
            if self.calls.wants(HookType.FIRST_BYTES):
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
                    raise hook_refusal(rejected[0], 400, "upload rejected by server")
                interrupted = self._interruption(reader, info)
                if reader.complete and conclude is not None:
                    info = await conclude(info)
            except p.TusError:
                if rejected:
                    await self._reject_upload(info, request)
                    raise hook_refusal(rejected[0], 400, "upload rejected by server") from None
                raise
            finally:
                del self._receiving[info.id]
                self._stop_responses.pop(info.id, None)
                if progress:
                    await asyncio.gather(*progress, return_exceptions=True)
                if self.calls.wants(HookType.POST_RECEIVE) and not rejected:
                    await self.notify(HookType.POST_RECEIVE, await self.store.get_info(info.id), request)
        return Received(info, info.is_complete and not was_complete, interrupted)

    def _interruption(self, reader: BodyReader, info: UploadInfo) -> p.TusError | None:
        """Why the body ended early, as the client is told; None if it did not, or if the
        client is gone and hears nothing."""
        if reader.interrupted is None or reader.interrupted == "disconnect":
            return None
        stop_response = self._stop_responses.get(info.id)
        if stop_response is not None:
            return hook_refusal(stop_response, 400, "upload has been stopped by the server")
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
        event = HookEvent(HookType.FIRST_BYTES, snapshot_of(info), request.snapshot(), head=head)
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
            await self.notify(HookType.POST_TERMINATE, info, request)

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

    # -- ending bodies from outside -----------------------------------------------------

    def drain(self) -> None:
        """End every body being received, and any that starts from now on."""
        self._draining = True
        for reader in list(self._receiving.values()):
            reader.stop("shutdown")

    def stop_upload(self, upload_id: str, response: HTTPResponse) -> None:
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
            async with self.locker.hold(upload_id, ignore_release):
                pass


def _check_protocol(info: UploadInfo, protocol: str) -> None:
    """An upload is served only by the protocol that created it: the two disagree on what
    completes an upload and on what their fields mean."""
    if info.protocol == protocol:
        return
    created_by = "tus 1.0" if info.protocol == d.TUS else "the resumable uploads draft"
    asked_by = "tus 1.0 (Tus-Resumable)" if protocol == d.TUS else "the draft (Upload-Draft-Interop-Version)"
    raise p.TusError(400, f"this upload was created with {created_by}; it cannot be used with {asked_by}")


def ignore_release() -> None:
    """Requests that hold a lock only briefly need not react to release requests."""
