"""The IETF resumable uploads draft, beside tus 1.0 on the same endpoint.

TusHandler sends a request here when it names an interop version. A draft upload lives
in the same store, under the same locks, and fires the same hooks as a tus upload;
every step that touches it is the shared one of `steps.py` (lock -> store -> hooks).
What is the draft's own: its fields, its answers (problem details, RFC 9457), and what
completes an upload: a request with `Upload-Complete: ?1` whose content all arrived.

ASGI has no way to send an informational response, so 104 (Upload Resumption
Supported) is never sent: the final response carries Location, and a client that wants
the upload's URL before it sends any byte creates the upload with an empty request.
"""

from __future__ import annotations

import time

from . import protocol as p
from .exchange import Reply, Request
from .hooks import HookFailed
from .protocol import draft as d
from .steps import UPLOAD_METHODS, Admit, Received, UploadSteps, ignore_release
from .stores import LengthDeferrer, NewUpload, UploadInfo

ENDPOINT_METHODS = "OPTIONS, POST"
INTEROP = {"Upload-Draft-Interop-Version": str(d.INTEROP_VERSION)}


class DraftHandler:
    """The draft's verbs, on the store, locks and hooks of `steps`."""

    def __init__(self, steps: UploadSteps) -> None:
        self.steps = steps

    async def dispatch(self, request: Request, route: str) -> Reply:
        d.check_draft_request(request.field(d.INTEROP_HEADER), "tus-resumable" in request.headers)
        method = request.method
        if route == "":
            if method == "OPTIONS":
                return self._options(ENDPOINT_METHODS)
            if method == "POST":
                return await self._create(request)
            raise p.TusError(405, "method not allowed", {"Allow": ENDPOINT_METHODS})
        upload_id = self.steps.upload_id(request.scope, route)
        if method == "OPTIONS":
            return self._options(UPLOAD_METHODS)
        if method == "HEAD":
            return await self._head(request, upload_id)
        if method == "PATCH":
            return await self._append(request, upload_id)
        if method == "DELETE":
            await self.steps.terminate(request, upload_id, d.DRAFT)
            return _reply(204, {})
        if method == "GET":
            download = await self.steps.download(request, upload_id)
            download.headers.update(INTEROP)
            download.protocol = d.DRAFT
            return download
        raise p.TusError(405, "method not allowed", {"Allow": UPLOAD_METHODS})

    def error_reply(self, error: p.TusError) -> Reply:
        """A refusal as problem details, or as a hook wrote it when it gave its own body."""
        headers = dict(error.headers)
        if any(name.lower() == "content-type" for name in headers):
            body = error.reason.encode("utf-8")
        else:
            problem = error.problem if isinstance(error, d.DraftError) else None
            members = error.members if isinstance(error, d.DraftError) else None
            body = d.problem_document(error.status, error.reason, problem, members)
            headers["Content-Type"] = d.PROBLEM_JSON
        return Reply(error.status, headers | INTEROP, body, protocol=d.DRAFT, reason=error.reason)

    # -- verbs ------------------------------------------------------------------------

    def _options(self, allow: str) -> Reply:
        return _reply(204, {"Accept-Patch": d.PARTIAL_UPLOAD, "Allow": allow, **self._limits(None)})

    async def _create(self, request: Request) -> Reply:
        h = request.headers
        complete = _required_flag(request)
        content_length = p.parse_content_length(h.get("content-length"))
        length = d.announced_length(d.parse_size(request.field("upload-length")), complete, content_length, 0)
        if length is None and not isinstance(self.steps.store, LengthDeferrer):
            raise p.TusError(400, "this server's store needs the length up front: send Upload-Length")
        self._check_max_size(length)
        self._check_room(length, 0, content_length)
        upload = NewUpload(
            id=p.new_upload_id(),
            size=length,
            metadata=dict(d.representation_metadata(h.get("content-type"), h.get("content-disposition"))),
            protocol=d.DRAFT,
        )
        info, headers = await self.steps.open(upload, request)
        try:
            if info.is_complete:
                # An empty upload is complete the moment it exists.
                headers.update(await self._finish(info, request))
            elif complete or d.may_carry_content(content_length, h.get("transfer-encoding")):
                info, finish_headers = await self._take_content(request, info.id, _as_is, complete)
                headers.update(finish_headers)
        except (p.TusError, HookFailed) as error:
            # The upload exists: its URL lets the client resume whatever went wrong.
            refusal = error if isinstance(error, p.TusError) else p.TusError(error.status, error.reason)
            refusal.headers.update(headers)
            raise refusal from None
        headers.update(_state(info))
        if not info.is_complete:
            headers.update(self._limits(info))
        return _reply(201, headers)

    async def _head(self, request: Request, upload_id: str) -> Reply:
        # Taking the lock ends a stalled append to this upload, as the draft recommends.
        async with self.steps.locker.hold(upload_id, ignore_release, requested_at=request.arrived_at):
            info = await self.steps.live_info(upload_id, d.DRAFT)
        headers = {**_state(info), "Cache-Control": "no-store", **self._limits(info)}
        if info.size is not None:
            headers["Upload-Length"] = str(info.size)
        return _reply(204, headers)

    async def _append(self, request: Request, upload_id: str) -> Reply:
        h = request.headers
        if not d.is_partial_upload(h.get("content-type")):
            raise p.TusError(415, f"Content-Type must be {d.PARTIAL_UPLOAD}", {"Accept-Patch": d.PARTIAL_UPLOAD})
        offset = d.parse_size(request.field("upload-offset"))
        if offset is None:
            raise p.TusError(400, "Upload-Offset is required: a non-negative Integer")
        complete = _required_flag(request)
        content_length = p.parse_content_length(h.get("content-length"))
        announced = d.announced_length(d.parse_size(request.field("upload-length")), complete, content_length, offset)
        has_content = d.may_carry_content(content_length, h.get("transfer-encoding"))

        async def admit(info: UploadInfo) -> UploadInfo:
            if info.is_complete:
                if has_content:
                    raise d.inconsistent_length("the upload is complete: nothing more can be appended")
                if not complete or offset != info.offset:
                    raise d.completed_upload()
                # An empty `Upload-Complete: ?1` at the end restates what is so: nothing to do.
                d.length_to_record(info.size, announced, offset)
                return info
            if offset != info.offset:
                raise d.mismatching_offset(info.offset, offset)
            length = d.length_to_record(info.size, announced, offset)
            if length is not None:
                self._check_max_size(length)
                assert isinstance(self.steps.store, LengthDeferrer)
                info = await self.steps.store.declare_length(info.id, length)
            self._check_room(info.size, offset, content_length)
            return info

        info, headers = await self._take_content(request, upload_id, admit, complete)
        return _reply(204, headers | _state(info))

    # -- shared by creation and append ---------------------------------------------------

    async def _take_content(
        self, request: Request, upload_id: str, admit: Admit, complete: bool
    ) -> tuple[UploadInfo, dict[str, str]]:
        """Append the request's content through the shared step; finish the upload if this
        request completed it. Returns the upload and the finishing hook's headers."""
        conclude = self._conclude if complete else None
        received = await self.steps.receive(upload_id, request, admit, protocol=d.DRAFT, conclude=conclude)
        headers = await self._finish(received.info, request) if received.finished else {}
        interrupted = self._interruption(received)
        if interrupted is not None:
            raise interrupted
        return received.info, headers

    async def _conclude(self, info: UploadInfo) -> UploadInfo:
        """The whole content of an `Upload-Complete: ?1` request is in: that is the length."""
        if info.size is None:
            assert isinstance(self.steps.store, LengthDeferrer)
            return await self.steps.store.declare_length(info.id, info.offset)
        if info.offset != info.size:
            raise d.inconsistent_length(f"the upload was completed at {info.offset} bytes, its length is {info.size}")
        return info

    async def _finish(self, info: UploadInfo, request: Request) -> dict[str, str]:
        try:
            return await self.steps.finish(info, request)
        except (p.TusError, HookFailed) as error:
            # Every byte is in: the refusal is about processing the upload, not sending it.
            refusal = error if isinstance(error, p.TusError) else p.TusError(error.status, error.reason)
            refusal.headers["Upload-Complete"] = d.format_flag(True)
            raise refusal from None

    def _interruption(self, received: Received) -> p.TusError | None:
        """The shared step's 413 for a body past the limit, in the draft's terms."""
        error = received.interrupted
        if error is None or error.status != 413:
            return error
        if received.info.size is not None:
            refusal = d.inconsistent_length(f"the content goes past the upload's length {received.info.size}")
            refusal.headers.update(error.headers)
            return refusal
        error.headers.update(self._limits(None))
        return error

    def _check_room(self, size: int | None, offset: int, content_length: int | None) -> None:
        """Refuse content that cannot fit, before reading any of it."""
        if content_length is None:
            return
        end = offset + content_length
        if size is not None and end > size:
            raise d.inconsistent_length(f"the content goes past the upload's length {size}")
        if size is None:
            self._check_max_size(end)

    def _check_max_size(self, length: int | None) -> None:
        max_size = self.steps.options.max_size
        if length is not None and max_size and length > max_size:
            raise p.TusError(413, f"upload is larger than the maximum size of {max_size} bytes", self._limits(None))

    def _limits(self, info: UploadInfo | None) -> dict[str, str]:
        """Upload-Limit for an upload, or for uploads to come when `info` is None."""
        expire_after = self.steps.options.expire_after
        max_age: int | None = None
        if self.steps.expiring and expire_after:
            if info is None:
                max_age = int(expire_after)
            elif not info.is_complete:
                max_age = int(info.modified_at + expire_after - time.time())
        value = d.upload_limit(self.steps.options.max_size, max_age)
        return {"Upload-Limit": value} if value is not None else {}


def _reply(status: int, headers: dict[str, str]) -> Reply:
    return Reply(status, headers | INTEROP, protocol=d.DRAFT)


def _state(info: UploadInfo) -> dict[str, str]:
    return {"Upload-Complete": d.format_flag(info.is_complete), "Upload-Offset": str(info.offset)}


def _required_flag(request: Request) -> bool:
    complete = d.parse_flag(request.field("upload-complete"))
    if complete is None:
        raise p.TusError(400, "Upload-Complete is required: ?1 or ?0")
    return complete


async def _as_is(info: UploadInfo) -> UploadInfo:
    """Nothing to check before a creation request's content: the upload is brand new."""
    return info
