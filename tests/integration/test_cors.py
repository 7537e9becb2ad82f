"""CORS with --cors-allow-origin: preflights, exposed headers, and refused origins."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningServer, start_server

TUS = {"Tus-Resumable": "1.0.0"}
ALLOWED = "https://app.example.com"
PREFLIGHT = {
    "Origin": ALLOWED,
    "Access-Control-Request-Method": "PATCH",
    "Access-Control-Request-Headers": "upload-offset,tus-resumable,content-type",
}


@pytest.fixture(scope="module")
def cors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("cors"), "--cors-allow-origin", r"https://app\.example\.com")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def listed(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def create(client: httpx.Client, server: RunningServer, origin: str | None = ALLOWED) -> httpx.Response:
    headers = {**TUS, "Upload-Length": "5"}
    if origin is not None:
        headers["Origin"] = origin
    response = client.post(server.endpoint, headers=headers)
    assert response.status_code == 201
    return response


@pytest.mark.parametrize("on_upload", [False, True], ids=["endpoint", "upload"])
def test_preflight_allows_tus_requests(client: httpx.Client, cors: RunningServer, on_upload: bool) -> None:
    url = create(client, cors).headers["Location"] if on_upload else cors.endpoint

    response = client.options(url, headers=PREFLIGHT)

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"patch", "post", "head", "delete"} <= listed(response.headers["Access-Control-Allow-Methods"])
    allowed = listed(response.headers["Access-Control-Allow-Headers"])
    assert {
        "upload-offset",
        "tus-resumable",
        "content-type",
        "upload-length",
        "upload-metadata",
        "upload-checksum",
        "upload-concat",
        "upload-defer-length",
        "x-http-method-override",
    } <= allowed


def test_responses_expose_the_tus_headers(client: httpx.Client, cors: RunningServer) -> None:
    created = create(client, cors)
    head = client.head(created.headers["Location"], headers={**TUS, "Origin": ALLOWED})

    for response in (created, head):
        assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
        exposed = listed(response.headers["Access-Control-Expose-Headers"])
        assert {"location", "upload-offset", "upload-length", "tus-resumable", "upload-expires"} <= exposed
    assert "origin" in listed(created.headers["Vary"])


def test_error_responses_are_readable_cross_origin(client: httpx.Client, cors: RunningServer) -> None:
    # Without CORS headers on a 412/404 a browser client sees only a network error.
    response = client.head(cors.endpoint + "c" * 32, headers={"Origin": ALLOWED})

    assert response.status_code == 412
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_capability_options_without_preflight_headers_reach_tus(client: httpx.Client, cors: RunningServer) -> None:
    response = client.options(cors.endpoint, headers={"Origin": ALLOWED})

    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "https://app.example.com.evil.net", "http://app.example.com", "null"]
)
def test_disallowed_origin_gets_no_allow_origin(client: httpx.Client, cors: RunningServer, origin: str) -> None:
    preflight = client.options(cors.endpoint, headers={**PREFLIGHT, "Origin": origin})
    simple = create(client, cors, origin)

    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert preflight.status_code >= 400
    assert "Access-Control-Allow-Origin" not in simple.headers


def test_wildcard_allows_any_origin(client: httpx.Client, server_factory: object) -> None:
    server: RunningServer = server_factory("--cors-allow-origin", "*")  # type: ignore[operator]

    preflight = client.options(server.endpoint, headers={**PREFLIGHT, "Origin": "https://anywhere.test"})
    simple = create(client, server, "https://anywhere.test")

    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", "https://anywhere.test")
    assert simple.headers["Access-Control-Allow-Origin"] in ("*", "https://anywhere.test")
    assert "location" in listed(simple.headers["Access-Control-Expose-Headers"])


def test_without_the_flag_there_are_no_cors_headers(client: httpx.Client, server: RunningServer) -> None:
    preflight = client.options(server.endpoint, headers=PREFLIGHT)
    simple = create(client, server)

    for response in (preflight, simple):
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert preflight.headers["Tus-Version"] == "1.0.0"
