"""How a request's work reaches the hooks, and how a hook's answer reaches the client."""

from __future__ import annotations

import logging

from . import protocol as p
from .exchange import Request
from .hooks import Hooks, HookType
from .hooks.events import HookEvent, HookResponse, HTTPResponse, RequestSnapshot, UploadSnapshot
from .stores import UploadInfo

log = logging.getLogger("tusd_py")


class HookCalls:
    """The hooks as the verbs call them: a server without hooks simply has none to call."""

    def __init__(self, hooks: Hooks | None) -> None:
        self.hooks = hooks

    def wants(self, hook_type: HookType) -> bool:
        return self.hooks is not None and self.hooks.wants(hook_type)

    async def ask(self, hook_type: HookType, upload: UploadSnapshot, request: Request) -> HookResponse:
        assert self.hooks is not None
        return await self.hooks.call(HookEvent(hook_type, upload, request.snapshot()))

    async def notify(self, hook_type: HookType, info: UploadInfo, request: Request | RequestSnapshot) -> None:
        if self.wants(hook_type):
            assert self.hooks is not None
            snapshot = request.snapshot() if isinstance(request, Request) else request
            try:
                await self.hooks.notify(HookEvent(hook_type, snapshot_of(info), snapshot))
            except Exception:
                # A non-blocking hook never changes the client's answer: its bytes are safe.
                log.exception("could not record the %s event", hook_type)


def snapshot_of(info: UploadInfo) -> UploadSnapshot:
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


def hook_headers(response: HTTPResponse) -> dict[str, str]:
    return {k: v for k, v in response.header.items() if k.lower() not in ("content-length", "transfer-encoding")}


def hook_refusal(response: HTTPResponse, status: int, reason: str) -> p.TusError:
    """The hook's own status, body and headers when it gave them; ours otherwise."""
    return p.TusError(response.status_code or status, response.body or reason, hook_headers(response))
