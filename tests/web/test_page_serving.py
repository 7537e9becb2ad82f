"""How `serve --web` serves the page: where, with which headers, and never in the way of
the tus endpoint or the asset API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from web_helpers import TUS

from tusd_py.config import ServeConfig

if TYPE_CHECKING:
    from conftest import RunningServer

PAGE_FILES = {
    "/": "text/html",
    "/web/app.js": "text/javascript",
    "/web/app.css": "text/css",
    "/web/favicon.svg": "image/svg+xml",
    "/web/config.json": "application/json",
}


@pytest.mark.parametrize(("path", "content_type"), PAGE_FILES.items())
def test_page_files_are_served_with_safe_headers(
    server_factory: Callable[..., RunningServer], path: str, content_type: str
) -> None:
    server = server_factory("--web")
    response = httpx.get(server.origin + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    head = httpx.head(server.origin + path, timeout=10)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["Content-Length"] == str(len(response.content))


def test_the_page_loads_nothing_from_elsewhere(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("--web")
    html = httpx.get(server.origin + "/", timeout=10).text
    assert "http://" not in html
    assert "https://" not in html
    assert "<script>" not in html
    assert 'src="web/app.js"' in html


@pytest.mark.parametrize(("flags", "assets"), [((), False), (("--assets",), True)])
def test_config_tells_the_page_the_base_path_and_whether_assets_are_on(
    server_factory: Callable[..., RunningServer], flags: tuple[str, ...], assets: bool
) -> None:
    server = server_factory("--web", "--base-path", "/uploads/", *flags)
    config = httpx.get(server.origin + "/web/config.json", timeout=10).json()
    assert config == {"base_path": "/uploads/", "api_path": "/v1", "assets": assets}


def test_without_web_there_is_no_page(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory()
    for path in PAGE_FILES:
        response = httpx.get(server.origin + path, timeout=10)
        assert response.status_code in (404, 405), path
        assert "Content-Security-Policy" not in response.headers


def test_unknown_files_under_web_are_not_found(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("--web")
    for path in ("/web/", "/web/index.html", "/web/../cli.py", "/web/static/app.js", "/web/%2e%2e/__init__.py"):
        assert httpx.get(server.origin + path, timeout=10).status_code == 404, path


def test_the_page_and_the_tus_endpoint_share_the_root(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("--web", "--base-path", "/")
    assert httpx.get(server.origin + "/", timeout=10).headers["Content-Type"].startswith("text/html")
    created = httpx.post(server.origin + "/", headers={**TUS, "Upload-Length": "3"}, timeout=10)
    assert created.status_code == 201
    url = created.headers["Location"]
    patched = httpx.patch(
        url,
        content=b"abc",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        timeout=10,
    )
    assert patched.status_code == 204
    assert httpx.get(url, timeout=10).content == b"abc"
    assert httpx.options(server.origin + "/", timeout=10).headers["Tus-Version"] == "1.0.0"


def test_web_is_off_by_default_and_set_by_flag_or_variable() -> None:
    assert ServeConfig().web is False
    assert ServeConfig.from_env({"TUSD_WEB": "1"}).web is True
    assert ServeConfig.from_env({"TUSD_WEB": "0"}).web is False
    assert ServeConfig(web=True).to_env()["TUSD_WEB"] == "1"
