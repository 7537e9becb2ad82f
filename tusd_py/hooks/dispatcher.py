"""Hooks: the one object the tus handler talks to about events.

Blocking (`pre-*`) events are invoked while the request waits and their answer shapes
the response. Non-blocking (`post-*`) events are committed to the outbox (when there is
one) before the request is answered and delivered in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .events import FileInfoChanges, HookEvent, HookResponse, HookType, HTTPResponse
from .outbox import Outbox
from .receivers import CallableReceiver, HookCallable, HookError, HookReceiver, HookTimeout

if TYPE_CHECKING:
    from ..telemetry import Metrics

log = logging.getLogger("tusd_py.hooks")

StopHandler = Callable[[str, HTTPResponse], None]


class HookFailed(Exception):
    """A blocking hook could not give an answer; the client gets `status` and `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Hooks:
    def __init__(
        self,
        receivers: Sequence[HookReceiver] = (),
        *,
        enabled_events: Iterable[HookType | str] | None = None,
        outbox: Outbox | None = None,
        timeout: float = 30.0,
        progress_interval: float = 1.0,
        first_bytes_length: int = 4096,
        metrics: Metrics | None = None,
    ) -> None:
        self.receivers = list(receivers)
        self.enabled_events = {HookType(e) for e in enabled_events} if enabled_events is not None else set(HookType)
        self.outbox = outbox
        self.timeout = timeout
        self.progress_interval = progress_interval
        self.first_bytes_length = first_bytes_length
        # Counts invocations and failures; the tus handler fills it in with its own if unset.
        self.metrics = metrics
        self._stop_handler: StopHandler | None = None
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_callables(cls, hooks: Mapping[HookType | str, HookCallable], **options: object) -> Hooks:
        return cls([CallableReceiver(hooks)], **options)  # type: ignore[arg-type]

    def wants(self, hook_type: HookType) -> bool:
        return hook_type in self.enabled_events and any(r.handles(hook_type) for r in self.receivers)

    def on_stop_upload(self, handler: StopHandler) -> None:
        """The tus handler registers how to end a running PATCH (post-receive StopUpload)."""
        self._stop_handler = handler

    # -- blocking ----------------------------------------------------------------------

    async def call(self, event: HookEvent) -> HookResponse:
        """Invoke a blocking hook; a refusal by the first receiver that refuses wins.

        Receivers are asked in order, each seeing the id and metadata as the ones before
        it changed them, so their changes compose instead of overwriting each other.
        """
        merged = HookResponse()
        for receiver in self.receivers:
            if not receiver.handles(event.type):
                continue
            self._count(event.type)
            try:
                async with asyncio.timeout(self.timeout):
                    response = await receiver.invoke(event)
            except (TimeoutError, HookTimeout):
                self._count_failure(event.type)
                raise HookFailed(504, f"{event.type} hook did not answer in time") from None
            except HookError as error:
                self._count_failure(event.type)
                log.warning("%s hook failed: %s", event.type, error)
                raise HookFailed(502, f"{event.type} hook failed") from None
            merged = _merge(merged, response)
            if _refuses(merged):
                break
            changes = response.change_file_info
            if changes.id is not None or changes.metadata is not None:
                upload = replace(
                    event.upload,
                    id=changes.id if changes.id is not None else event.upload.id,
                    metadata=changes.metadata if changes.metadata is not None else event.upload.metadata,
                )
                event = replace(event, upload=upload)
        return merged

    # -- non-blocking ------------------------------------------------------------------

    async def notify(self, event: HookEvent) -> None:
        """Hand a post-event over: durably (returns once on disk) or fire-and-forget."""
        if not self.wants(event.type):
            return
        if self.outbox is not None:
            await self.outbox.enqueue(event)
            return
        task = asyncio.get_running_loop().create_task(self._deliver_logged(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver(self, event: HookEvent) -> None:
        """Send a post-event to every receiver; raises so that the outbox retries."""
        for receiver in self.receivers:
            if not receiver.handles(event.type):
                continue
            self._count(event.type)
            try:
                async with asyncio.timeout(self.timeout):
                    response = await receiver.invoke(event)
            except Exception:
                self._count_failure(event.type)
                raise
            if event.type == HookType.POST_RECEIVE and response.stop_upload and self._stop_handler is not None:
                self._stop_handler(event.upload.id, response.http_response)

    def _count(self, hook_type: HookType) -> None:
        if self.metrics is not None:
            self.metrics.hook_invoked(str(hook_type))

    def _count_failure(self, hook_type: HookType) -> None:
        if self.metrics is not None:
            self.metrics.hook_failed(str(hook_type))

    async def _deliver_logged(self, event: HookEvent) -> None:
        try:
            await self.deliver(event)
        except Exception as error:
            log.warning("%s hook failed: %s", event.type, error)

    def start(self) -> None:
        if self.outbox is not None:
            self.outbox.start(self.deliver)

    async def close(self) -> None:
        if self.outbox is not None:
            await self.outbox.close()
        for receiver in self.receivers:
            close = getattr(receiver, "aclose", None)
            if close is not None:
                await close()


def _refuses(response: HookResponse) -> bool:
    status = response.http_response.status_code
    return response.reject_upload or response.reject_termination or (status is not None and status >= 400)


def _merge(first: HookResponse, second: HookResponse) -> HookResponse:
    a, b = first.http_response, second.http_response
    http = HTTPResponse(
        b.status_code or a.status_code, b.body if b.body is not None else a.body, {**a.header, **b.header}
    )
    changes = FileInfoChanges(
        second.change_file_info.id if second.change_file_info.id is not None else first.change_file_info.id,
        second.change_file_info.metadata
        if second.change_file_info.metadata is not None
        else first.change_file_info.metadata,
    )
    return HookResponse(
        http_response=http,
        reject_upload=first.reject_upload or second.reject_upload,
        reject_termination=first.reject_termination or second.reject_termination,
        change_file_info=changes,
        stop_upload=first.stop_upload or second.stop_upload,
    )
