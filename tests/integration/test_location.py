"""Location URLs under --base-path, when mounted in another app, and behind proxies.

On the FileStore only: a Location is made from the request alone, the same for every store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import FileBackend, RunningServer, serve_app, start_server
from starlette.applications import Starlette
from starlette.routing import Mount

from tusd_py.app import create_app

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
ID = "[0-9a-f]{32}"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("proxied"), "--behind-proxy")
    yield server
    server.stop()


def location(client: httpx.Client, endpoint: str, headers: dict[str, str] | None = None) -> str:
    response = client.post(endpoint, headers={**TUS, "Upload-Length": "4", **(headers or {})})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def works(client: httpx.Client, url: str) -> None:
    """The Location is usable for the whole upload."""
    patched = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"data")
    assert patched.status_code == 204
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Offset"] == "4"
    assert client.get(url).content == b"data"


# -- --base-path ---------------------------------------------------------------------------


@pytest.mark.parametrize("base_path", ["/uploads/", "/deep/er"])
def test_base_path_is_in_location(client: httpx.Client, server_factory: object, base_path: str) -> None:
    server: RunningServer = server_factory("--base-path", base_path)  # type: ignore[operator]
    clean = "/" + base_path.strip("/") + "/"

    url = location(client, server.origin + clean)

    assert re.fullmatch(re.escape(server.origin + clean) + ID, url)
    works(client, url)
    assert client.post(server.origin + "/files/", headers={**TUS, "Upload-Length": "1"}).status_code == 404


# -- mounted in another ASGI app ----------------------------------------------------------------


def test_mounted_app_location_includes_the_mount_path(client: httpx.Client, tmp_path: Path) -> None:
    app = Starlette(routes=[Mount("/api/tus", app=create_app(tmp_path))])
    with serve_app(app) as origin:
        url = location(client, origin + "/api/tus/")

        assert re.fullmatch(re.escape(origin + "/api/tus/") + ID, url)
        works(client, url)
        assert FileBackend(tmp_path).read(url.rsplit("/", 1)[-1]) == b"data"


def test_mounted_app_with_its_own_base_path(client: httpx.Client, tmp_path: Path) -> None:
    app = Starlette(routes=[Mount("/api", app=create_app(tmp_path, base_path="/files/"))])
    with serve_app(app) as origin:
        url = location(client, origin + "/api/files/")

        assert re.fullmatch(re.escape(origin + "/api/files/") + ID, url)
        works(client, url)


# -- behind a proxy ---------------------------------------------------------------------------------


def test_x_forwarded_headers_are_reflected(client: httpx.Client, proxied: RunningServer) -> None:
    url = location(
        client,
        proxied.endpoint,
        {"X-Forwarded-Host": "example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/tus"},
    )
    assert re.fullmatch("https://example\\.com/tus/files/" + ID, url)


def test_x_forwarded_host_with_port(client: httpx.Client, proxied: RunningServer) -> None:
    url = location(client, proxied.endpoint, {"X-Forwarded-Host": "example.com:8443", "X-Forwarded-Proto": "https"})
    assert re.fullmatch("https://example\\.com:8443/files/" + ID, url)


@pytest.mark.parametrize(
    "forwarded",
    [
        "proto=https;host=example.com",
        'for=10.0.0.1;proto=https;host="example.com"',
        "proto=https;host=example.com, proto=http;host=inner",
    ],
)
def test_rfc7239_forwarded_is_reflected(client: httpx.Client, proxied: RunningServer, forwarded: str) -> None:
    url = location(client, proxied.endpoint, {"Forwarded": forwarded})
    assert re.fullmatch("https://example\\.com/files/" + ID, url)


def test_proxy_headers_are_ignored_without_behind_proxy(client: httpx.Client, server: RunningServer) -> None:
    headers = {
        "X-Forwarded-Host": "example.com",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Prefix": "/tus",
        "Forwarded": "proto=https;host=example.org",
    }
    url = location(client, server.endpoint, headers)
    assert re.fullmatch(re.escape(server.endpoint) + ID, url)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": 'evil.com/"><script>'},
        {"X-Forwarded-Host": "evil.com/path"},
        {"X-Forwarded-Host": "user@evil.com"},
        {"Forwarded": 'host="evil.com/\\"><script>"'},
        {"X-Forwarded-Proto": "javascript"},
        {"X-Forwarded-Prefix": '/a"><script>'},
        {"X-Forwarded-Prefix": "//evil.com"},
    ],
    # Named, not numbered: "headers3" would match `-k s3`, which selects the S3 runs.
    ids=["host-markup", "host-path", "host-userinfo", "forwarded-markup", "proto", "prefix-markup", "prefix-authority"],
)
def test_garbage_proxy_headers_are_ignored(
    client: httpx.Client, proxied: RunningServer, headers: dict[str, str]
) -> None:
    url = location(client, proxied.endpoint, headers)
    assert re.fullmatch(re.escape(proxied.endpoint) + ID, url)
