"""Driving the upload page: open it, give it files, pause, resume, read what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024


def open_page(page: Page, origin: str, chunk: int) -> None:
    page.goto(f"{origin}/?chunk={chunk}")
    page.wait_for_selector("body[data-ready='true']", state="attached")


def upload_row(page: Page, file: Path) -> Locator:
    page.set_input_files("#files", str(file))
    return page.locator("#uploads li.upload").last


def wait_for(row: Locator, expression: str, timeout: float = 30_000) -> None:
    """Wait until `expression` (JavaScript, with `row` the upload's element) is true."""
    row.page.wait_for_function(f"(row) => {expression}", arg=row.element_handle(), timeout=timeout, polling=20)


def server_offset(url: str) -> int:
    response = httpx.head(url, headers=TUS, timeout=10)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def pause_mid_upload(row: Locator, size: int) -> int:
    """Pause once some bytes are confirmed; the server's offset then, strictly inside the file."""
    wait_for(row, "Number(row.dataset.offset || 0) > 0")
    row.locator("button.pause").click()
    wait_for(row, "row.dataset.status === 'paused'")
    confirmed = int(row.get_attribute("data-offset") or 0)
    offset = server_offset(row_url(row))
    assert confirmed <= offset, "the server holds fewer bytes than it confirmed"
    assert 0 < offset < size, f"paused at {offset} of {size}"
    return offset


def row_url(row: Locator) -> str:
    url = row.get_attribute("data-url")
    assert url is not None
    return url


def percent(row: Locator) -> int:
    text = row.locator(".percent").inner_text()
    match = re.match(r"(\d+)%", text)
    assert match is not None, text
    return int(match.group(1))
