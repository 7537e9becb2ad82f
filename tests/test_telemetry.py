"""Metrics: one registry per app, tusd's exact names, few error codes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from conftest import serve_app
from prometheus_client.parser import text_string_to_metric_families

from tusd_py.app import build_handler
from tusd_py.locks import LockTimeout, MemoryLocker
from tusd_py.telemetry import MeteredLocker, Metrics, error_code, redact


def names(page: bytes) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(page.decode())}


def test_two_apps_in_one_process_keep_their_own_counts(tmp_path: Path) -> None:
    first = build_handler(tmp_path / "a")
    second = build_handler(tmp_path / "b")
    with serve_app(first) as origin:
        created = httpx.post(origin + "/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
        assert created.status_code == 201
    assert first.metrics is not second.metrics
    assert b"tusd_uploads_created 1.0" in asyncio.run(first.metrics.render())
    assert b"tusd_uploads_created 0.0" in asyncio.run(second.metrics.render())


def test_exposes_tusd_names_and_types() -> None:
    found = names(asyncio.run(Metrics().render()))
    # The parser names counter families without `_total`.
    assert found["tusd_requests"] == "counter"
    assert found["tusd_errors"] == "counter"
    assert found["tusd_hook_invocations"] == "counter"
    assert found["tusd_hook_errors"] == "counter"
    assert found["tusd_connections_open"] == "gauge"
    assert found["tusd_py_lock_wait_seconds"] == "histogram"
    for untyped in ("tusd_bytes_received", "tusd_uploads_created", "tusd_uploads_finished", "tusd_uploads_terminated"):
        assert found[untyped] == "unknown"
    # No backlog source, no backlog sample (rather than a made-up zero).
    assert "tusd_py_hook_outbox_pending" not in found


def test_outbox_backlog_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    backlog = [4]

    async def pending() -> int:
        return backlog[0]

    metrics.watch_outbox(pending)
    assert b"tusd_py_hook_outbox_pending 4.0" in asyncio.run(metrics.render())
    backlog[0] = 0
    assert b"tusd_py_hook_outbox_pending 0.0" in asyncio.run(metrics.render())


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [
        (409, "Upload-Offset 5 does not match the upload's offset 7", "ERR_MISMATCHED_OFFSET"),
        (400, "upload was interrupted by another request for it\n", "ERR_UPLOAD_INTERRUPTED"),
        (400, "Upload-Length is not a number", "ERR_BAD_REQUEST"),
        (503, "server is shutting down", "ERR_SERVER_SHUTDOWN"),
        (503, "storage unavailable", "ERR_STORAGE_UNAVAILABLE"),
        (418, "teapot", "ERR_STATUS_418"),
    ],
)
def test_error_codes_come_from_a_fixed_list(status: int, reason: str, code: str) -> None:
    assert error_code(status, reason) == code


def test_lock_waits_and_timeouts_are_counted() -> None:
    metrics = Metrics()
    locker = MeteredLocker(MemoryLocker(timeout=0.2), metrics)

    async def scenario() -> None:
        async with locker.hold("a", lambda: None):
            with pytest.raises(LockTimeout):
                # An older request is not asked to let go: this one times out.
                async with locker.hold("a", lambda: None, requested_at=0.0):
                    pass

    asyncio.run(scenario())
    assert (metrics.lock_wait_count, metrics.lock_timeouts) == (1, 1)


def test_redact_hides_api_keys() -> None:
    assert redact("/v1/sk_live_abcDEF123/x") == "/v1/sk_[redacted]/x"
    assert redact("/files/abc") == "/files/abc"
