"""The upload page with assets on (`serve --web`, the default lifecycle) in a real Chromium:
an API key and a project, an asset created by the page, paused and resumed, and its state
followed on the page until `ready`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import Page
from web.browser import slow_patches
from web_helpers import TUS, open_page, pause_mid_upload, percent, row_url, upload_row, wait_for

if TYPE_CHECKING:
    from conftest import RunningServer

INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))
import assets_helpers  # noqa: E402

CHUNK = 4 * 1024
SECONDS = 30.0


@pytest.fixture
def platform(server_factory: Callable[..., RunningServer], tmp_path: Path) -> Any:
    return assets_helpers.start_platform(server_factory, tmp_path / "data", price=0, balance=0, flags=("--web",))


@pytest.fixture(scope="module")
def mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(assets_helpers.MediaCache(tmp_path_factory.mktemp("media"))("mp3", SECONDS))


def sign_in(page: Page, platform: Any) -> None:
    page.fill("#api-key", platform.tenant.key)
    page.fill("#project-id", platform.tenant.project_id)


def test_an_mp3_paused_and_resumed_becomes_a_ready_asset_on_the_page(
    page: Page, page_problems: list[str], platform: Any, mp3: Path
) -> None:
    data = mp3.read_bytes()
    assert len(data) > 4 * CHUNK
    page.route("**/files/**", slow_patches)
    open_page(page, platform.server.origin, CHUNK)
    assert page.locator("#credentials").is_visible()
    sign_in(page, platform)

    row = upload_row(page, mp3)
    pause_mid_upload(row, len(data))
    asset_id = row.get_attribute("data-asset-id")
    assert asset_id is not None
    assert row_url(row) == f"{platform.server.endpoint}{asset_id}"
    assert platform.asset(asset_id)["state"] == "pending_upload"

    row.locator("button.resume").click()
    wait_for(row, "row.dataset.status === 'done'")
    assert percent(row) == 100
    assert row.locator(".asset-state").inner_text() == "ready"
    asset = platform.asset(asset_id)
    assets_helpers.assert_ready(asset, "mp3", len(data), SECONDS)
    response = httpx.get(row_url(row), headers=TUS, timeout=30)
    assert response.status_code == 200
    assert response.content == data
    assert page_problems == []


def test_without_a_key_and_a_project_nothing_is_uploaded(page: Page, platform: Any, mp3: Path) -> None:
    open_page(page, platform.server.origin, CHUNK)
    page.set_input_files("#files", str(mp3))
    assert "API key" in page.locator("#notice").inner_text()
    assert page.locator("#uploads li").count() == 0
    listed = httpx.get(
        f"{platform.server.origin}/v1/assets",
        params={"project_id": platform.tenant.project_id},
        headers=platform.auth,
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"] == []


def test_a_wrong_key_shows_the_api_error(page: Page, platform: Any, mp3: Path) -> None:
    open_page(page, platform.server.origin, CHUNK)
    page.fill("#api-key", "sk_not-a-key")
    page.fill("#project-id", platform.tenant.project_id)
    row = upload_row(page, mp3)
    wait_for(row, "row.dataset.status === 'error'")
    assert row.locator(".error").inner_text().startswith("401")
    assert row.get_attribute("data-url") is None


def test_bytes_that_are_not_media_end_the_asset_failed(page: Page, platform: Any, tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp3"
    junk.write_bytes(b"just some text, not audio\n" * 2000)
    open_page(page, platform.server.origin, CHUNK)
    sign_in(page, platform)
    row = upload_row(page, junk)
    wait_for(row, "row.dataset.status === 'error' || row.dataset.status === 'failed'")
    assert row.locator(".error").inner_text().startswith("415")
    asset_id = row.get_attribute("data-asset-id")
    assert asset_id is not None
    assert platform.asset(asset_id)["state"] == "failed"
