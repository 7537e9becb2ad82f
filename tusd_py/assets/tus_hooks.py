"""How the asset module rides on the tus layer: through its public hooks only.

- pre-create: a tus client may create an asset on the tus endpoint (API key in the
  Authorization header or in metadata `api_key`, `project_id` and `language` in
  metadata); the upload takes the asset's id, and the key never reaches the metadata.
- first-bytes: kind, extension and MIME type from the bytes; not media -> 415, failed.
- pre-finish: the last byte is stored -> processing (the row is the persisted job).
- pre-terminate: the transfer URL cannot end an asset whose upload is finished.
- post-terminate: an upload ended through its transfer URL (or by expiry of an idle
  upload) takes its still-open asset along.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..hooks import FileInfoChanges, HookEvent, HookResponse, HookType, HTTPResponse
from ..hooks.receivers import HookCallable
from .errors import ApiError
from .languages import normalize_language
from .media import sniff
from .service import PENDING_UPLOAD, AssetService

INTERNAL_METADATA = ("api_key",)


def json_refusal(error: ApiError) -> HTTPResponse:
    return HTTPResponse(error.status, error.body(), {"Content-Type": "application/json", **error.headers})


def bearer_token(header: Mapping[str, tuple[str, ...]]) -> str | None:
    for name, values in header.items():
        if name.lower() == "authorization" and values:
            scheme, _, token = values[0].partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


class AssetHooks:
    def __init__(self, service: AssetService, *, on_processing: Callable[[], None] = lambda: None) -> None:
        self.service = service
        self.on_processing = on_processing

    def callables(self) -> dict[HookType | str, HookCallable]:
        return {
            HookType.PRE_CREATE: self.pre_create,
            HookType.FIRST_BYTES: self.first_bytes,
            HookType.PRE_FINISH: self.pre_finish,
            # Again, durably: if recording processing failed in pre-finish, the outbox retries.
            HookType.POST_FINISH: self.pre_finish,
            HookType.PRE_TERMINATE: self.pre_terminate,
            HookType.POST_TERMINATE: self.post_terminate,
        }

    async def pre_create(self, event: HookEvent) -> HookResponse:
        upload = event.upload
        metadata = upload.metadata
        try:
            account_id = await self.service.authenticate(bearer_token(event.request.header) or metadata.get("api_key"))
            if upload.is_partial or upload.is_final:
                raise ApiError(400, "concatenation_unsupported", "an asset is uploaded as one upload, not concatenated")
            if upload.size is None:
                raise ApiError(400, "size_required", "an asset needs its size: send Upload-Length")
            project_id = metadata.get("project_id")
            if not project_id:
                raise ApiError(422, "validation_error", "project_id is required in Upload-Metadata")
            try:
                language = normalize_language(metadata.get("language"))
            except ValueError as error:
                raise ApiError(422, "validation_error", str(error)) from None
            asset = await self.service.open_asset(account_id, project_id, upload.size, language)
        except ApiError as error:
            return HookResponse(reject_upload=True, http_response=json_refusal(error))
        kept = {k: v for k, v in metadata.items() if k not in INTERNAL_METADATA}
        return HookResponse(change_file_info=FileInfoChanges(id=asset.id, metadata=kept))

    async def first_bytes(self, event: HookEvent) -> HookResponse | None:
        asset_id = event.upload.id
        try:
            asset = await self.service.get_asset(asset_id)
        except ApiError:
            return None  # an upload that is not an asset
        if asset.state != PENDING_UPLOAD:
            return None
        media = sniff(event.head)
        if media is None:
            message = "the uploaded bytes are not audio or video"
            await self.service.fail(asset_id, "unsupported_media_type", message, from_states=(PENDING_UPLOAD,))
            error = ApiError(415, "unsupported_media_type", message)
            return HookResponse(reject_upload=True, http_response=json_refusal(error))
        await self.service.set_media(asset_id, media)
        return None

    async def pre_finish(self, event: HookEvent) -> None:
        if await self.service.finish_upload(event.upload.id, event.upload.offset):
            self.on_processing()

    async def pre_terminate(self, event: HookEvent) -> HookResponse | None:
        """The transfer URL may end an open upload, not an asset it has become."""
        try:
            asset = await self.service.get_asset(event.upload.id)
        except ApiError:
            return None
        if asset.state == PENDING_UPLOAD:
            return None
        error = ApiError(403, "asset_not_deletable_here", "the upload is finished: DELETE /v1/assets/{id} with a key")
        return HookResponse(reject_termination=True, http_response=json_refusal(error))

    async def post_terminate(self, event: HookEvent) -> None:
        try:
            asset = await self.service.get_asset(event.upload.id)
        except ApiError:
            return
        # A failed asset stays readable with its error; its bytes were removed on purpose.
        if asset.state == PENDING_UPLOAD:
            await self.service.delete_asset(asset.id)
