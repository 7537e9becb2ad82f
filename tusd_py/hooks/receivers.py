"""Where hook events go: Python callables, an HTTP endpoint, or a directory of executables.

Every receiver answers `invoke(event)` with a HookResponse or raises HookError.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import httpx

from .events import (
    TUSD_HOOKS,
    HookEvent,
    HookResponse,
    HookResponseError,
    HookType,
    event_to_json,
    response_from_json,
)
from .signing import SIGNATURE_HEADER, sign

log = logging.getLogger("tusd_py.hooks")

HookCallable = Callable[[HookEvent], Awaitable[HookResponse | None]]
EVENT_ID_HEADER = "Hook-Event-ID"


class HookError(Exception):
    """A receiver failed: it raised, timed out, was unreachable, or answered nonsense."""


class HookTimeout(HookError):
    """A receiver did not answer in time."""


class HookReceiver(Protocol):
    def handles(self, hook_type: HookType) -> bool: ...

    async def invoke(self, event: HookEvent) -> HookResponse: ...


class CallableReceiver:
    """In-process hooks: an async callable per event type."""

    def __init__(self, hooks: Mapping[HookType | str, HookCallable]) -> None:
        self._hooks = {HookType(name): fn for name, fn in hooks.items()}

    def handles(self, hook_type: HookType) -> bool:
        return hook_type in self._hooks

    async def invoke(self, event: HookEvent) -> HookResponse:
        try:
            result = await self._hooks[event.type](event)
        except Exception as error:
            # The traceback goes to the log, never to the client.
            log.exception("%s hook raised", event.type)
            raise HookError(f"{event.type} hook raised {type(error).__name__}") from error
        return result if result is not None else HookResponse()


class HttpReceiver:
    """tusd-compatible HTTP webhooks: POST the event as JSON, read the answer as JSON."""

    def __init__(
        self,
        url: str,
        *,
        enabled: Sequence[HookType] | None = None,
        secret: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 1.0,
        forward_headers: Sequence[str] = (),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.enabled = set(enabled) if enabled is not None else set(TUSD_HOOKS)
        self.secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.forward_headers = [h.lower() for h in forward_headers]
        self._client = client

    def handles(self, hook_type: HookType) -> bool:
        return hook_type in self.enabled

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def invoke(self, event: HookEvent) -> HookResponse:
        body = json.dumps(event_to_json(event), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event.id}
        for name in self.forward_headers:
            for key, values in event.request.header.items():
                if key.lower() == name and values:
                    headers[key] = values[0]
        last_error: HookError = HookError("no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            if self.secret is not None:
                # Signed per attempt, so a retry carries a fresh timestamp.
                headers[SIGNATURE_HEADER] = sign(self.secret, body)
            try:
                response = await self._get_client().post(self.url, content=body, headers=headers)
            except httpx.TimeoutException:
                last_error = HookTimeout(f"hook endpoint did not answer within {self.timeout:g} s")
                continue
            except httpx.HTTPError as error:
                last_error = HookError(f"hook endpoint unreachable: {type(error).__name__}")
                continue
            if not 200 <= response.status_code < 300:
                last_error = HookError(f"hook endpoint answered {response.status_code}")
                continue
            try:
                return response_from_json(json.loads(response.content) if response.content.strip() else None)
            except (ValueError, HookResponseError) as error:
                raise HookError(f"hook endpoint answered invalid JSON: {error}") from None
        raise last_error


class CommandReceiver:
    """Like tusd's -hooks-dir: an executable named after the event, JSON on stdin and stdout."""

    def __init__(self, directory: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.directory = Path(directory)
        self.timeout = timeout

    def _executable(self, hook_type: HookType) -> Path | None:
        path = self.directory / str(hook_type)
        return path if path.is_file() and os.access(path, os.X_OK) else None

    def handles(self, hook_type: HookType) -> bool:
        return self._executable(hook_type) is not None

    async def invoke(self, event: HookEvent) -> HookResponse:
        path = self._executable(event.type)
        if path is None:
            return HookResponse()
        body = json.dumps(event_to_json(event)).encode()
        process = await asyncio.create_subprocess_exec(
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TUS_HOOK_TYPE": str(event.type), "TUS_ID": event.upload.id},
        )
        try:
            async with asyncio.timeout(self.timeout):
                stdout, stderr = await process.communicate(body)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise HookTimeout(f"{path.name} did not finish within {self.timeout:g} s") from None
        if stderr:
            log.info("%s: %s", path.name, stderr.decode(errors="replace").strip())
        if process.returncode != 0:
            raise HookError(f"{path.name} exited with status {process.returncode}")
        try:
            return response_from_json(json.loads(stdout) if stdout.strip() else None)
        except (ValueError, HookResponseError) as error:
            raise HookError(f"{path.name} printed an invalid response: {error}") from None
