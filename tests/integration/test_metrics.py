"""GET /metrics: tusd's metric names counted by a real server, and where the page is served."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from conftest import RunningServer, free_port, wait_for_port
from ops_helpers import scrape, value

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
ServerFactory = Callable[..., RunningServer]


def test_counts_the_life_of_uploads(server_factory: ServerFactory) -> None:
    server = server_factory("--expose-metrics")
    data = b"x" * 70_000
    with httpx.Client(timeout=10) as client:
        url = client.post(server.endpoint, headers={**TUS, "Upload-Length": str(len(data))}).headers["Location"]
        assert (
            client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=data[:30_000]).status_code == 204
        )
        stale = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"y")
        assert stale.status_code == 409
        done = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "30000"}, content=data[30_000:])
        assert done.status_code == 204
        assert client.head(url, headers=TUS).headers["Upload-Offset"] == str(len(data))
        other = client.post(server.endpoint, headers={**TUS, "Upload-Length": "10"}).headers["Location"]
        assert client.delete(other, headers=TUS).status_code == 204
    samples = scrape(server.origin + "/metrics")

    assert value(samples, "tusd_requests_total", method="POST") == 2
    assert value(samples, "tusd_requests_total", method="PATCH") == 3
    assert value(samples, "tusd_requests_total", method="HEAD") == 1
    assert value(samples, "tusd_requests_total", method="DELETE") == 1
    assert value(samples, "tusd_errors_total", status="409", code="ERR_MISMATCHED_OFFSET") == 1
    # The refused PATCH's byte was never read: counts are of bytes taken from bodies.
    assert value(samples, "tusd_bytes_received") == len(data)
    assert value(samples, "tusd_uploads_created") == 2
    assert value(samples, "tusd_uploads_finished") == 1
    assert value(samples, "tusd_uploads_terminated") == 1
    assert value(samples, "tusd_py_requests_total", method="PATCH", status="204") == 2
    assert value(samples, "tusd_py_requests_total", method="PATCH", status="409") == 1
    # PATCH, PATCH, PATCH, HEAD and DELETE each took the upload's lock.
    assert value(samples, "tusd_py_lock_wait_seconds_count") == 5
    assert value(samples, "tusd_py_lock_wait_seconds_bucket", le="+Inf") == 5
    # The scrape's own connection is open while the page is made.
    assert value(samples, "tusd_connections_open") >= 1


def test_open_connections_go_up_and_down(server_factory: ServerFactory) -> None:
    server = server_factory("--expose-metrics")
    clients = [httpx.Client(timeout=10) for _ in range(3)]
    try:
        for client in clients:
            assert client.options(server.endpoint).status_code == 204
        assert value(scrape(server.origin + "/metrics"), "tusd_connections_open") == 4
    finally:
        for client in clients:
            client.close()
    deadline = time.monotonic() + 5
    while value(scrape(server.origin + "/metrics"), "tusd_connections_open") != 1:
        assert time.monotonic() < deadline, "closed connections are still counted"
        time.sleep(0.05)


def test_hook_calls_failures_and_outbox_backlog(server_factory: ServerFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hooks"
    server = server_factory(
        "--expose-metrics",
        *("--hooks-http", dead, "--hooks-enabled-events", "post-create"),
        *("--hooks-http-retry", "0", "--hooks-http-backoff", "30s", "--hooks-http-timeout", "1s"),
    )
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            assert client.post(server.endpoint, headers={**TUS, "Upload-Length": "5"}).status_code == 201
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server.origin + "/metrics")
        if value(samples, "tusd_hook_errors_total", hooktype="post-create") >= 3:
            break
        assert time.monotonic() < deadline, samples
        time.sleep(0.1)
    assert value(samples, "tusd_hook_invocations_total", hooktype="post-create") >= 3
    # Each delivery failed and waits 30 s for its retry: all three are still owed.
    assert value(samples, "tusd_py_hook_outbox_pending") == 3


def test_metrics_are_off_unless_asked(server: RunningServer) -> None:
    response = httpx.get(server.origin + "/metrics")
    assert response.status_code == 404
    assert "tusd_requests_total" not in response.text


def test_metrics_port_serves_metrics_there_only(server_factory: ServerFactory) -> None:
    metrics_port = free_port()
    server = server_factory("--metrics-port", str(metrics_port), "--expose-metrics")
    wait_for_port(metrics_port)
    assert httpx.get(server.origin + "/metrics").status_code == 404
    assert httpx.post(server.endpoint, headers={**TUS, "Upload-Length": "3"}).status_code == 201
    samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    assert value(samples, "tusd_uploads_created") == 1
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/files/").status_code == 404
    # Both listeners stop on SIGTERM.
    server.process.terminate()
    server.process.wait(15)
