"""tus 1.0's verbs and extensions (creation, deferred length, termination, expiration,
checksum, concatenation), on the steps both protocols share."""

from __future__ import annotations

import logging
from email.utils import formatdate

from . import protocol as p
from .exchange import Reply, Request
from .hooks import HookFailed, HookType
from .locks import LockTimeout
from .protocol import draft as d
from .steps import UPLOAD_METHODS, Admit, UploadSteps, ignore_release
from .stores import Concater, LengthDeferrer, NewUpload, Terminater, UploadInfo, UploadNotFound

log = logging.getLogger("tusd_py")


class TusVerbs:
    """tus 1.0 requests, on the store, locks and hooks of `steps`."""

    def __init__(self, steps: UploadSteps) -> None:
        self.steps = steps
        self.store = steps.store
        self.options = steps.options

    @property
    def extensions(self) -> list[str]:
        found = ["creation", "creation-with-upload"]
        if isinstance(self.store, LengthDeferrer):
            found.append("creation-defer-length")
        if isinstance(self.store, Terminater):
            found.append("termination")
        if self.steps.expiring:
            found.append("expiration")
        found.append("checksum")
        if isinstance(self.store, Concater):
            found += ["concatenation", "concatenation-unfinished"]
        return found

    async def dispatch(self, request: Request, route: str) -> Reply:
        method = request.method
        if route == "":
            if method == "OPTIONS":
                return self._options()
            if method == "POST":
                return await self._create(request)
            raise p.TusError(405, "method not allowed", {"Allow": "OPTIONS, POST"})
        upload_id = self.steps.upload_id(request.scope, route)
        if method == "OPTIONS":
            return self._options()
        if method == "GET":
            return await self.steps.download(request, upload_id)
        if method not in ("HEAD", "PATCH", "DELETE"):
            raise p.TusError(405, "method not allowed", {"Allow": UPLOAD_METHODS})
        p.check_tus_resumable(request.headers.get("tus-resumable"))
        if method == "HEAD":
            return await self._head(request, upload_id)
        if method == "PATCH":
            return await self._patch(request, upload_id)
        await self.steps.terminate(request, upload_id)
        return Reply(204)

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
        info, headers = await self.steps.open(upload, request)
        if is_final:
            info = await self._link_final(info, partials, request)
        else:
            try:
                interrupted = None
                if has_body:
                    admit = self._admit(request, 0, None)
                    received = await self.steps.receive(info.id, request, admit, checksum=checksum)
                    info, finished, interrupted = received.info, received.finished, received.interrupted
                else:
                    # An empty upload is finished the moment it exists.
                    finished = info.is_complete
                if finished:
                    headers.update(await self.steps.finish(info, request))
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

    async def _head(self, request: Request, upload_id: str) -> Reply:
        async with self.steps.locker.hold(upload_id, ignore_release, requested_at=request.arrived_at):
            info = await self.steps.live_info(upload_id, d.TUS)
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
        admit = self._admit(request, offset, declared_length)
        received = await self.steps.receive(upload_id, request, admit, checksum=checksum)
        info = received.info
        headers = {}
        if received.finished:
            headers.update(await self._finish_partial(info, request))
        if received.interrupted is not None:
            raise received.interrupted
        headers["Upload-Offset"] = str(info.offset)
        headers.update(self._expiry_header(info))
        return Reply(204, headers)

    # -- what a body may do -------------------------------------------------------------

    def _admit(self, request: Request, offset: int, declared_length: int | None) -> Admit:
        async def admit(info: UploadInfo) -> UploadInfo:
            if info.is_final:
                raise p.TusError(403, "a final upload cannot be modified")
            if offset != info.offset:
                raise p.TusError(409, f"Upload-Offset {offset} does not match the upload's offset {info.offset}")
            if declared_length is not None:
                info = await self._declare_length(info, declared_length, request)
            return info

        return admit

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

    def _check_max_size(self, size: int | None) -> None:
        if size is not None and self.options.max_size and size > self.options.max_size:
            raise p.TusError(413, f"upload is larger than the maximum size of {self.options.max_size} bytes")

    def _expiry_header(self, info: UploadInfo) -> dict[str, str]:
        if not self.steps.expiring or info.is_complete:
            return {}
        assert self.options.expire_after is not None
        return {"Upload-Expires": formatdate(info.modified_at + self.options.expire_after, usegmt=True)}

    # -- concatenation ------------------------------------------------------------------

    async def _finish_partial(self, info: UploadInfo, request: Request) -> dict[str, str]:
        """Finish an upload, then the final uploads that were waiting for it."""
        headers = await self.steps.finish(info, request)
        for final_id in info.waiting_finals:
            # This partial's bytes are stored whatever becomes of a final that waits on it.
            try:
                async with self.steps.locker.hold(final_id, ignore_release):
                    await self._complete_final(await self.store.get_info(final_id), request)
            except (UploadNotFound, LockTimeout, p.TusError) as error:
                log.info("final upload %s not completed: %s", final_id, error)
        return headers

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
        async with self.steps.locker.hold(final.id, ignore_release):
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
        self.steps.metrics.upload_finished()
        await self.steps.notify(HookType.POST_FINISH, final, request)
        return final
