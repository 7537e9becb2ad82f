"""The asset HTTP API under /v1: JSON in, JSON out, errors as {"error": {code, message}}."""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..protocol import public_origin
from .errors import ApiError, unauthorized
from .languages import normalize_language
from .openapi import openapi_document
from .service import PENDING_PAYMENT, PENDING_UPLOAD, READY, STATES, AssetService
from .tus_hooks import bearer_token

log = logging.getLogger("tusd_py.assets")

MAX_JSON_BYTES = 64 * 1024
MAX_INT64 = 2**63 - 1
CREATE_FIELDS = {"project_id", "size", "language"}

OpenUpload = Callable[[str, int, dict[str, str | None]], Awaitable[None]]
EndUpload = Callable[[str], Awaitable[None]]


def rfc3339(microseconds: int) -> str:
    moment = datetime.fromtimestamp(microseconds / 1e6, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class AssetApi:
    """Routes are full paths (/v1/...): the app sees the same scope as the tus endpoint,
    so both build URLs from the same root path."""

    def __init__(
        self,
        service: AssetService,
        *,
        open_upload: OpenUpload,
        end_upload: EndUpload,
        tus_base_path: str,
        behind_proxy: bool = False,
        admin_token: str | None = None,
    ) -> None:
        self.service = service
        self.open_upload = open_upload
        self.end_upload = end_upload
        self.tus_base_path = "/" + tus_base_path.strip("/") + "/" if tus_base_path.strip("/") else "/"
        self.behind_proxy = behind_proxy
        self.admin_token = admin_token
        self.app = Starlette(
            routes=[
                Route("/v1/assets", self.create_asset, methods=["POST"]),
                Route("/v1/assets", self.list_assets, methods=["GET"]),
                Route("/v1/assets/{asset_id}", self.get_asset, methods=["GET"]),
                Route("/v1/assets/{asset_id}", self.delete_asset, methods=["DELETE"]),
                Route("/v1/accounts/{account_id}/top-ups", self.top_up, methods=["POST"]),
                Route("/v1/openapi.json", self.openapi, methods=["GET"]),
            ],
            exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected},
        )

    # -- helpers --------------------------------------------------------------------------

    def upload_url(self, request: Request, asset_id: str) -> str:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
        origin = public_origin(
            request.scope.get("scheme", "http"), headers, request.scope.get("server"), behind_proxy=self.behind_proxy
        )
        return origin.url(request.scope.get("root_path", "") + self.tus_base_path + asset_id)

    def asset_json(self, request: Request, row: Row[Any]) -> dict[str, Any]:
        pending = row.state == PENDING_UPLOAD
        return {
            "id": row.id,
            "project_id": row.project_id,
            "kind": row.kind,
            "state": row.state,
            "extension": row.extension,
            "size": None if pending else (row.size if row.size is not None else row.declared_size),
            "mime_type": row.mime_type,
            "duration": row.duration if row.state in (READY, PENDING_PAYMENT) else None,
            "language": row.language,
            "created_at": rfc3339(row.created_at),
            "error_code": row.error_code,
            "error_message": row.error_message,
            "upload_url": self.upload_url(request, row.id) if pending else None,
        }

    async def account(self, request: Request) -> str:
        return await self.service.authenticate(_bearer(request))

    # -- routes ---------------------------------------------------------------------------

    async def create_asset(self, request: Request) -> Response:
        account_id = await self.account(request)
        body = await _json_object(request)
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise _invalid(f"unknown fields: {', '.join(unknown)}")
        project_id = body.get("project_id")
        if not isinstance(project_id, str) or not project_id or not _is_text(project_id):
            raise _invalid("project_id must be a non-empty string")
        size = body.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _invalid("size must be an integer >= 0")
        if size > MAX_INT64:
            raise ApiError(413, "too_large", "size is larger than any upload can be")
        try:
            language = normalize_language(body.get("language"))
        except ValueError as error:
            raise _invalid(str(error)) from None
        asset = await self.service.open_asset(account_id, project_id, size, language)
        if asset.state == PENDING_UPLOAD:
            metadata: dict[str, str | None] = {"project_id": project_id}
            if language is not None:
                metadata["language"] = language
            try:
                await self.open_upload(asset.id, size, metadata)
            except Exception:
                await self.service.delete_asset(asset.id)
                raise
        payload = self.asset_json(request, asset)
        headers = {"Location": payload["upload_url"]} if payload["upload_url"] else {}
        return JSONResponse(payload, status_code=201, headers=headers)

    async def get_asset(self, request: Request) -> Response:
        account_id = await self.account(request)
        row = await self.service.get_asset(request.path_params["asset_id"], account_id)
        return JSONResponse(self.asset_json(request, row))

    async def list_assets(self, request: Request) -> Response:
        account_id = await self.account(request)
        query = request.query_params
        project_id = query.get("project_id")
        if not project_id:
            raise _invalid("project_id is required")
        state = query.get("state")
        if state is not None and state not in STATES:
            raise _invalid(f"state must be one of {', '.join(STATES)}")
        limit_text = query.get("limit", "20")
        if not re.fullmatch(r"[0-9]{1,3}", limit_text) or not 1 <= int(limit_text) <= 100:
            raise _invalid("limit must be an integer from 1 to 100")
        page = await self.service.list_assets(account_id, project_id, state, int(limit_text), query.get("cursor"))
        return JSONResponse(
            {"data": [self.asset_json(request, row) for row in page.assets], "next_cursor": page.next_cursor}
        )

    async def delete_asset(self, request: Request) -> Response:
        account_id = await self.account(request)
        row = await self.service.get_asset(request.path_params["asset_id"], account_id)
        await self.end_upload(row.id)
        await self.service.delete_asset(row.id)
        return Response(status_code=204)

    async def top_up(self, request: Request) -> Response:
        token = _bearer(request)
        if not self.admin_token or not token or not hmac.compare_digest(token, self.admin_token):
            raise unauthorized("top-ups need the admin token: Authorization: Bearer <admin token>")
        body = await _json_object(request)
        unknown = sorted(set(body) - {"amount"})
        if unknown:
            raise _invalid(f"unknown fields: {', '.join(unknown)}")
        amount = body.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount > 2**62:
            raise _invalid("amount must be a positive integer (minor currency units)")
        return JSONResponse(await self.service.top_up(request.path_params["account_id"], amount))

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    return bearer_token({"Authorization": (header,)}) or ""


async def _json_object(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, "too_large", f"the request body is larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _invalid("the request body must be a JSON object")
    return data


def _is_text(value: str) -> bool:
    """False for strings JSON allows but no database stores (lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _invalid(message: str) -> ApiError:
    return ApiError(422, "validation_error", message)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return Response(error.body(), status_code=error.status, headers=error.headers, media_type="application/json")


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    headers = dict(error.headers or {})
    return await _api_error(request, ApiError(error.status_code, code, str(error.detail), headers))


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unexpected error in the asset API")
    return await _api_error(request, ApiError(500, "internal_error", "internal server error"))
