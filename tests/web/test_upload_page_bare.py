"""The upload page on a bare tus server (`serve --web --no-assets`) in a real Chromium:
upload, pause, resume, and the bytes on the server."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from playwright.sync_api import Page
from web.browser import slow_patches
from web_helpers import TUS, MiB, open_page, pause_mid_upload, percent, row_url, server_offset, upload_row, wait_for

if TYPE_CHECKING:
    from conftest import RunningServer

CHUNK = 64 * 1024


def test_an_upload_paused_and_resumed_arrives_whole(
    page: Page, page_problems: list[str], server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory("--web")
    data = os.urandom(3 * MiB + 12345)
    file = tmp_path / "holiday video.bin"
    file.write_bytes(data)
    page.route("**/files/**", slow_patches)
    open_page(page, server.origin, CHUNK)

    row = upload_row(page, file)
    paused_at = pause_mid_upload(row, len(data))
    # Paused means paused: nothing more reaches the server.
    time.sleep(0.3)
    assert server_offset(row_url(row)) == paused_at

    row.locator("button.resume").click()
    wait_for(row, "row.dataset.status === 'done'")
    assert percent(row) == 100
    assert row.locator(".upload-url").inner_text() == row_url(row)
    url = row_url(row)
    assert url.startswith(server.endpoint)
    response = httpx.get(url, headers=TUS, timeout=30)
    assert response.status_code == 200
    assert response.content == data
    head = httpx.head(url, headers=TUS, timeout=10)
    assert head.headers["Upload-Length"] == str(len(data))
    # The page named the file in Upload-Metadata (the download's Content-Disposition shows it).
    assert "holiday video.bin" in response.headers.get("Content-Disposition", "")
    assert page_problems == []


def test_files_are_uploaded_side_by_side_each_with_its_progress(
    page: Page, page_problems: list[str], server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory("--web")
    files = {}
    for name, size in (("a.bin", 200_000), ("b.bin", 0), ("c.txt", 70_000)):
        files[name] = os.urandom(size)
        (tmp_path / name).write_bytes(files[name])
    open_page(page, server.origin, CHUNK)
    page.set_input_files("#files", [str(tmp_path / name) for name in files])
    rows = page.locator("#uploads li.upload")
    assert rows.count() == len(files)
    for index, (name, data) in enumerate(files.items()):
        row = rows.nth(index)
        assert row.locator(".name").inner_text() == name
        wait_for(row, "row.dataset.status === 'done'")
        assert percent(row) == 100
        assert httpx.get(row_url(row), headers=TUS, timeout=30).content == data
    assert page_problems == []


def test_a_refused_upload_shows_the_server_message(
    page: Page, server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory("--web", "--max-size", "1000")
    file = tmp_path / "big.bin"
    file.write_bytes(os.urandom(5000))
    open_page(page, server.origin, CHUNK)
    row = upload_row(page, file)
    wait_for(row, "row.dataset.status === 'error'")
    assert row.locator(".error").inner_text().startswith("413")
    assert row.get_attribute("data-url") is None
