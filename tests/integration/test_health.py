"""GET /healthz and /readyz at the app's root, beside the tus routes and /v1."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import httpx
from conftest import RunningServer

TUS = {"Tus-Resumable": "1.0.0"}
ServerFactory = Callable[..., RunningServer]


def test_healthz_answers(server: RunningServer) -> None:
    response = httpx.get(server.origin + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


def test_readyz_checks_every_part_with_assets(server_factory: ServerFactory) -> None:
    server = server_factory("--assets")
    response = httpx.get(server.origin + "/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"store": "ok", "locker": "ok", "database": "ok", "hook_outbox": "ok"},
    }


def test_readyz_without_assets_or_hooks_checks_store_and_locker(server: RunningServer) -> None:
    response = httpx.get(server.origin + "/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"store": "ok", "locker": "ok"}


def test_readyz_names_the_failing_part(server: RunningServer) -> None:
    shutil.rmtree(server.upload_dir)
    response = httpx.get(server.origin + "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["store"]
    assert body["checks"]["store"].startswith("failed: ")
    assert body["checks"]["locker"] == "ok"
    # The process itself still answers.
    assert httpx.get(server.origin + "/healthz").status_code == 200


def test_health_paths_win_over_a_root_base_path(server_factory: ServerFactory) -> None:
    server = server_factory("--base-path", "/")
    assert httpx.get(server.origin + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.origin + "/readyz").status_code == 200
    # The tus routes under / still work.
    created = httpx.post(server.origin + "/", headers={**TUS, "Upload-Length": "1"})
    assert created.status_code == 201
    assert httpx.head(created.headers["Location"], headers=TUS).status_code == 200


def test_health_paths_only_read(server: RunningServer) -> None:
    for path in ("/healthz", "/readyz"):
        response = httpx.post(server.origin + path)
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
    assert httpx.head(server.origin + "/healthz").status_code == 200


def test_health_is_not_under_the_tus_base_path(server: RunningServer) -> None:
    # /files/healthz is an upload URL like any other (an unknown upload), not a health check.
    assert httpx.head(server.endpoint + "healthz", headers=TUS).status_code == 404
