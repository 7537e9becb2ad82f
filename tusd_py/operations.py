"""What operators need around the tus app: health and readiness, metrics, access logs, and
draining on shutdown.

`Operations` wraps the whole app (tus endpoint and, when on, the asset API). It answers
`/healthz`, `/readyz` and (when exposed) `/metrics` at the app's root, in front of every
other route, so these paths never reach the tus routes or /v1. It writes one access-log
line per request and counts requests by method and status. The connection protocol
(`tusd_py.server.TusHttpToolsProtocol`) finds it through `server_events` to count open
connections and to hear that the server is shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .handler import TusHandler
from .hooks import Outbox
from .locks import Locker
from .stores import FileStore, Store, UploadNotFound
from .telemetry import CONTENT_TYPE, RECORD_KEY, Metrics, RequestRecord, redact

log = logging.getLogger("tusd_py.operations")
access_log = logging.getLogger("tusd_py.access")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
RESERVED_PATHS = (HEALTH_PATH, READY_PATH, METRICS_PATH)

# Each readiness probe gets this long; a hung database must not hang /readyz.
CHECK_TIMEOUT = 2.0
# A client's X-Request-ID is kept if it looks like an id (a UUID, a ULID, a trace id).
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
LOG_FORMATS = ("text", "json")


# -- readiness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One part /readyz looks at: `probe` returns when the part works and raises when not."""

    name: str
    probe: Callable[[], Awaitable[None]]


def store_check(store: Store) -> Check:
    async def probe() -> None:
        if isinstance(store, FileStore):
            await anyio.to_thread.run_sync(_write_probe, store.directory)
            return
        # Other stores: an answer (even "not found") means the store is reachable.
        with contextlib.suppress(UploadNotFound):
            await store.get_info("readyz-" + uuid.uuid4().hex)

    return Check("store", probe)


def _write_probe(directory: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=".readyz-", dir=directory)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(name)


def locker_check(locker: Locker) -> Check:
    async def probe() -> None:
        # A fresh id per probe: it never waits for, nor disturbs, an upload's lock.
        async with locker.hold("readyz-" + uuid.uuid4().hex, _ignore):
            pass

    return Check("locker", probe)


def outbox_check(outbox: Outbox) -> Check:
    async def probe() -> None:
        await outbox.pending()

    return Check("hook_outbox", probe)


def database_check(probe: Callable[[], Awaitable[None]]) -> Check:
    return Check("database", probe)


def _ignore() -> None:
    """A probe holds its lock for no time; nothing to let go of."""


async def run_checks(checks: Sequence[Check]) -> dict[str, str]:
    async def one(check: Check) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await check.probe()
        except TimeoutError:
            log.warning("readiness check %s timed out", check.name)
            return "timeout"
        except Exception as error:
            # The body names the part and the kind of failure only: messages may carry
            # connection strings.
            log.warning("readiness check %s failed: %s", check.name, error)
            return f"failed: {type(error).__name__}"
        return "ok"

    results = await asyncio.gather(*(one(c) for c in checks))
    return {c.name: r for c, r in zip(checks, results, strict=True)}


# -- access logs ----------------------------------------------------------------------------


_BARE_VALUE = re.compile(r'[^\s"=\\]+')


def _logfmt_value(value: object) -> str:
    text = "-" if value is None else str(value)
    if _BARE_VALUE.fullmatch(text) and text.isprintable():
        return text
    return json.dumps(text)


def logfmt(fields: dict[str, object]) -> str:
    return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())


class _Logfmt:
    """Formats the fields only if a handler prints the message (the JSON one does not)."""

    def __init__(self, fields: dict[str, object]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return logfmt(self.fields)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; an access line's fields are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "tusd_fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def logging_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`: uvicorn applies it in each
    worker process too. JSON mode turns uvicorn's own lines into JSON as well."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = json.loads(json.dumps(LOGGING_CONFIG))
    ours = "tusd_py.operations.JsonFormatter" if log_format == "json" else "tusd_py.operations.TextFormatter"
    config["formatters"]["tusd_py"] = {"()": ours}
    if log_format == "json":
        config["formatters"]["default"] = {"()": ours}
        config["formatters"]["access"] = {"()": ours}
    config["handlers"]["tusd_py"] = {
        "formatter": "tusd_py",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["tusd_py"] = {"handlers": ["tusd_py"], "level": "INFO", "propagate": False}
    return config


# -- the wrapper ----------------------------------------------------------------------------


class Operations:
    """ASGI middleware around the whole app; see the module's docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        handler: TusHandler,
        metrics: Metrics,
        checks: Sequence[Check] = (),
        expose_metrics: bool = False,
        access_log: bool = True,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.handler = handler
        self.metrics = metrics
        self.checks = list(checks)
        self.expose_metrics = expose_metrics
        self.access_log = access_log
        self.shutdown_timeout = shutdown_timeout
        self._drain_task: asyncio.Task[None] | None = None

    # -- what the connection protocol calls ---------------------------------------------

    @property
    def server_events(self) -> Operations:
        return self

    def connection_opened(self) -> None:
        self.metrics.connection_opened()

    def connection_closed(self) -> None:
        self.metrics.connection_closed()

    def shutting_down(self) -> None:
        """The server stopped accepting: requests in flight get `shutdown_timeout` to end,
        then the bodies still arriving are ended with their bytes kept."""
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain_later())

    async def _drain_later(self) -> None:
        await asyncio.sleep(self.shutdown_timeout)
        log.info("shutdown timeout reached: ending uploads in flight")
        self.handler.drain()

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        record = RequestRecord()
        scope[RECORD_KEY] = record
        status = 0
        sent = 0
        raw_id = request_id.encode("latin-1")

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", raw_id)]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        try:
            if path == HEALTH_PATH:
                await self._health(scope, send_with_id)
            elif path == READY_PATH:
                await self._ready(scope, send_with_id)
            elif path == METRICS_PATH and self.expose_metrics:
                await serve_metrics(self.metrics, scope, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.request(scope["method"], status)
            if self.access_log:
                self._log(scope, request_id, record, status, sent, time.perf_counter() - started)

    async def _health(self, scope: Scope, send: Send) -> None:
        if not await _allow_read(scope, send):
            return
        await _send_json(send, 200, {"status": "ok"}, head=scope["method"] == "HEAD")

    async def _ready(self, scope: Scope, send: Send) -> None:
        if not await _allow_read(scope, send):
            return
        results = await run_checks(self.checks)
        failing = [name for name, result in results.items() if result != "ok"]
        if failing:
            body: dict[str, Any] = {"status": "unavailable", "failing": failing, "checks": results}
            await _send_json(send, 503, body, head=scope["method"] == "HEAD")
        else:
            await _send_json(send, 200, {"status": "ready", "checks": results}, head=scope["method"] == "HEAD")

    def _log(
        self, scope: Scope, request_id: str, record: RequestRecord, status: int, sent: int, duration: float
    ) -> None:
        client = scope.get("client")
        # The path only: a query string may carry tokens. Never headers (Authorization,
        # Upload-Metadata, signatures).
        fields: dict[str, object] = {
            "request_id": request_id,
            "method": scope["method"],
            "path": redact(scope["path"]),
            "status": status or None,
            "upload_id": None if record.upload_id is None else redact(record.upload_id),
            "bytes_received": record.bytes_received if record.bytes_received is not None else _declared(scope),
            "bytes_sent": sent,
            "duration_ms": round(duration * 1000, 3),
            "client": client[0] if client else None,
        }
        access_log.info("%s", _Logfmt(fields), extra={"tusd_fields": fields})


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text) and redact(text) == text:
                return text
            break
    return uuid.uuid4().hex


def _declared(scope: Scope) -> int:
    """Outside the tus handler (asset API, health) bodies are small and read whole."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return max(0, int(value))
    return 0


async def _allow_read(scope: Scope, send: Send) -> bool:
    if scope["method"] in ("GET", "HEAD"):
        return True
    await _send_json(send, 405, {"status": "method not allowed"}, extra=[(b"allow", b"GET, HEAD")])
    return False


async def _send_json(
    send: Send, status: int, body: dict[str, Any], *, head: bool = False, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    raw = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else raw})


async def serve_metrics(metrics: Metrics, scope: Scope, send: Send) -> None:
    if not await _allow_read(scope, send):
        return
    body = await metrics.render()
    headers = [
        (b"content-type", CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class MetricsApp:
    """The app of the separate `--metrics-port` listener: /metrics and nothing else."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH:
            await serve_metrics(self.metrics, scope, send)
        else:
            await _send_json(send, 404, {"status": "not found"})
