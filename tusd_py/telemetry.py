"""Counters the server keeps about itself, exposed in Prometheus' text format.

One `Metrics` object per app, with its own registry: two apps in one process never
share counts. The handler, the hooks and the connection protocol call its methods; the
counts are plain numbers updated on the event loop, turned into Prometheus families only
when scraped. Names shared with tusd keep tusd's exact spelling (`tusd_bytes_received`
has no `_total`), so dashboards written for tusd keep working; ours start `tusd_py_`.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .locks import Locker, LockTimeout

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds a request waited for an upload's lock; the last bound is the default lock timeout.
LOCK_WAIT_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)

# tusd's error codes where the meaning is the same; the status alone picks the code, so
# the label's values stay few whatever the reason text says.
_ERROR_CODES = {
    400: "ERR_BAD_REQUEST",
    401: "ERR_UNAUTHORIZED",
    403: "ERR_MODIFY_FINAL",
    404: "ERR_UPLOAD_NOT_FOUND",
    405: "ERR_METHOD_NOT_ALLOWED",
    408: "ERR_READ_TIMEOUT",
    409: "ERR_MISMATCHED_OFFSET",
    410: "ERR_UPLOAD_EXPIRED",
    412: "ERR_UNSUPPORTED_VERSION",
    413: "ERR_MAX_SIZE_EXCEEDED",
    415: "ERR_INVALID_CONTENT_TYPE",
    423: "ERR_UPLOAD_LOCKED",
    431: "ERR_HEADERS_TOO_LARGE",
    460: "ERR_UPLOAD_CHECKSUM_MISMATCH",
    500: "ERR_INTERNAL_SERVER_ERROR",
    502: "ERR_HOOK_FAILED",
    503: "ERR_SERVER_SHUTDOWN",
    504: "ERR_HOOK_TIMEOUT",
    507: "ERR_STORAGE_FULL",
}
# 400 covers several refusals; these reasons are fixed texts of the handler.
_REASON_CODES = {
    "upload was interrupted by another request for it": "ERR_UPLOAD_INTERRUPTED",
    "upload has been stopped by the server": "ERR_UPLOAD_STOPPED",
    "upload rejected by server": "ERR_UPLOAD_REJECTED",
    "client disconnected": "ERR_CLIENT_DISCONNECTED",
    "storage unavailable": "ERR_STORAGE_UNAVAILABLE",
}

_SECRET = re.compile(r"sk_[A-Za-z0-9_-]*")


def error_code(status: int, reason: str = "") -> str:
    code = _REASON_CODES.get(reason.strip())
    if code is not None:
        return code
    return _ERROR_CODES.get(status, f"ERR_STATUS_{status}")


def redact(text: str) -> str:
    """Hide anything shaped like an API key."""
    return _SECRET.sub("sk_[redacted]", text) if "sk_" in text else text


@dataclass
class RequestRecord:
    """What the tus handler tells the access log about a request; lives in the ASGI scope."""

    upload_id: str | None = None
    bytes_received: int | None = None


# The scope key under which the access log leaves a RequestRecord for the handler.
RECORD_KEY = "tusd_py.record"


def record_of(scope: object) -> RequestRecord | None:
    found = scope.get(RECORD_KEY) if isinstance(scope, dict) else None
    return found if isinstance(found, RequestRecord) else None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.tus_requests: Counter[str] = Counter()
        self.tus_errors: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.bytes_received = 0
        self.uploads_created = 0
        self.uploads_finished = 0
        self.uploads_terminated = 0
        self.connections_open = 0
        self.hook_invocations: Counter[str] = Counter()
        self.hook_errors: Counter[str] = Counter()
        self.lock_wait_buckets = [0] * len(LOCK_WAIT_BUCKETS)
        self.lock_wait_count = 0
        self.lock_wait_seconds = 0.0
        self.lock_timeouts = 0
        self.outbox_pending: float | None = None
        self._outbox_source: Callable[[], Awaitable[int]] | None = None
        self.registry.register(_Collector(self))

    # -- what the server calls -----------------------------------------------------------

    def tus_request(self, method: str) -> None:
        self.tus_requests[method] += 1

    def tus_error(self, status: int, reason: str) -> None:
        self.tus_errors[(str(status), error_code(status, reason))] += 1

    def request(self, method: str, status: int) -> None:
        self.requests[(method, str(status))] += 1

    def received(self, count: int) -> None:
        self.bytes_received += count

    def upload_created(self) -> None:
        self.uploads_created += 1

    def upload_finished(self) -> None:
        self.uploads_finished += 1

    def upload_terminated(self) -> None:
        self.uploads_terminated += 1

    def connection_opened(self) -> None:
        self.connections_open += 1

    def connection_closed(self) -> None:
        self.connections_open -= 1

    def hook_invoked(self, hook_type: str) -> None:
        self.hook_invocations[hook_type] += 1

    def hook_failed(self, hook_type: str) -> None:
        self.hook_errors[hook_type] += 1

    def lock_waited(self, seconds: float) -> None:
        self.lock_wait_count += 1
        self.lock_wait_seconds += seconds
        index = bisect.bisect_left(LOCK_WAIT_BUCKETS, seconds)
        if index < len(self.lock_wait_buckets):
            self.lock_wait_buckets[index] += 1

    def lock_timed_out(self) -> None:
        self.lock_timeouts += 1

    # -- scraping ------------------------------------------------------------------------

    def watch_outbox(self, pending: Callable[[], Awaitable[int]]) -> None:
        """Read the hook outbox's backlog with `pending` at each scrape."""
        self._outbox_source = pending

    async def render(self) -> bytes:
        if self._outbox_source is not None:
            try:
                self.outbox_pending = float(await self._outbox_source())
            except Exception:
                # An unreadable outbox shows as a missing sample; /readyz names it.
                self.outbox_pending = None
        return generate_latest(self.registry)


class MeteredLocker:
    """A locker that reports how long each request waited for the lock, and 423s."""

    def __init__(self, locker: Locker, metrics: Metrics) -> None:
        self.locker = locker
        self.metrics = metrics

    @asynccontextmanager
    async def hold(
        self, upload_id: str, on_release_requested: Callable[[], None], *, requested_at: float | None = None
    ) -> AsyncIterator[None]:
        started = time.monotonic()
        acquired = False
        try:
            async with self.locker.hold(upload_id, on_release_requested, requested_at=requested_at):
                acquired = True
                self.metrics.lock_waited(time.monotonic() - started)
                yield
        except LockTimeout:
            if not acquired:
                self.metrics.lock_timed_out()
            raise


def _counter(name: str, documentation: str, samples: Iterable[tuple[dict[str, str], float]]) -> Metric:
    # Samples under their exact names. The text format names a counter's family without
    # `_total` and its samples with it; tusd's counters without the suffix
    # (tusd_bytes_received) can only be exposed untyped under their own name.
    if name.endswith("_total"):
        family = Metric(name.removesuffix("_total"), documentation, "counter")
    else:
        family = Metric(name, documentation, "unknown")
    for labels, value in samples:
        family.add_sample(name, labels, value)
    return family


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _counter(
            "tusd_requests_total",
            "Total number of tus requests served, per method.",
            (({"method": k}, v) for k, v in sorted(m.tus_requests.items())),
        )
        yield _counter(
            "tusd_errors_total",
            "Total number of tus requests refused, per status and error code.",
            (({"status": s, "code": c}, v) for (s, c), v in sorted(m.tus_errors.items())),
        )
        yield _counter("tusd_bytes_received", "Number of bytes received for uploads.", [({}, m.bytes_received)])
        yield _counter("tusd_uploads_created", "Number of created uploads.", [({}, m.uploads_created)])
        yield _counter("tusd_uploads_finished", "Number of finished uploads.", [({}, m.uploads_finished)])
        yield _counter("tusd_uploads_terminated", "Number of terminated uploads.", [({}, m.uploads_terminated)])
        yield GaugeMetricFamily(
            "tusd_connections_open", "Current number of open connections.", value=m.connections_open
        )
        yield _counter(
            "tusd_hook_invocations_total",
            "Total number of invocations per hook type.",
            (({"hooktype": k}, v) for k, v in sorted(m.hook_invocations.items())),
        )
        yield _counter(
            "tusd_hook_errors_total",
            "Total number of execution errors per hook type.",
            (({"hooktype": k}, v) for k, v in sorted(m.hook_errors.items())),
        )
        yield _counter(
            "tusd_py_requests_total",
            "Total number of HTTP requests answered, per method and status (every route).",
            (({"method": k, "status": s}, v) for (k, s), v in sorted(m.requests.items())),
        )
        if m.outbox_pending is not None:
            yield GaugeMetricFamily(
                "tusd_py_hook_outbox_pending",
                "Hook events stored in the outbox and not yet delivered.",
                value=m.outbox_pending,
            )
        cumulative, buckets = 0, []
        for bound, count in zip(LOCK_WAIT_BUCKETS, m.lock_wait_buckets, strict=True):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        buckets.append(("+Inf", m.lock_wait_count))
        yield HistogramMetricFamily(
            "tusd_py_lock_wait_seconds",
            "Time requests waited to take an upload's lock.",
            buckets=buckets,
            sum_value=m.lock_wait_seconds,
        )
        yield _counter(
            "tusd_py_lock_timeouts_total",
            "Requests answered 423 because an upload's lock was not released in time.",
            [({}, m.lock_timeouts)],
        )


def _bound(value: float) -> str:
    return repr(float(value))
