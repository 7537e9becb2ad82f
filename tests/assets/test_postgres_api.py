"""The platform app (tus endpoint + /v1) on a PostgreSQL database, as `--database
postgresql://...` builds it: requests end to end, in process."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from media_factory import make_audio

from tusd_py.assets import create_platform_app
from tusd_py.assets.db import create_engine, create_schema, database_url
from tusd_py.assets.platform import PlatformApp
from tusd_py.assets.service import AssetService

PRICE = 10
ADMIN = "admin-token-for-tests"
TUS = {"Tus-Resumable": "1.0.0"}

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Platform:
    app: PlatformApp
    client: httpx.AsyncClient
    account_id: str
    project_id: str
    key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def wait_for(self, asset_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                response = await self.client.get(f"/v1/assets/{asset_id}", headers=self.auth)
                assert response.status_code == 200, response.text
                asset: dict[str, Any] = response.json()
                if asset["state"] == state:
                    return asset
                await asyncio.sleep(0.05)


@pytest.fixture
async def platform(postgres_server: Any, tmp_path: Path) -> AsyncIterator[Platform]:
    url = postgres_server.create_database()
    # Provisioned the way `tusd-py accounts|projects|keys --database URL` does it.
    engine = create_engine(database_url(url, tmp_path))
    try:
        await create_schema(engine)
        service = AssetService(engine)
        account = await service.create_account("acme")
        project = await service.create_project(account["id"], "podcasts")
        key = await service.create_key(account["id"])
    finally:
        await engine.dispose()
    app = create_platform_app(tmp_path / "data", database_url=url, price_per_minute=PRICE, admin_token=ADMIN)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tusd.test", timeout=20) as client:
            yield Platform(app, client, account["id"], project["id"], key["key"])
    finally:
        await app.shutdown()


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_audio(tmp_path_factory.mktemp("media") / "two.wav", "wav", 2.0).read_bytes()


async def test_an_asset_goes_from_creation_to_ready_and_is_charged_once(platform: Platform, wav: bytes) -> None:
    p = platform
    created = await p.client.post("/v1/assets", json={"project_id": p.project_id, "size": len(wav)}, headers=p.auth)
    assert created.status_code == 201, created.text
    asset = created.json()
    assert asset["state"] == "pending_upload"
    upload_url = created.headers["Location"]
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    patched = await p.client.patch(upload_url, content=wav, headers=headers)
    assert patched.status_code == 204, patched.text
    # The balance is empty: measured, then waiting for money.
    pending = await p.wait_for(asset["id"], "pending_payment")
    assert (pending["kind"], pending["mime_type"], Decimal(pending["duration"])) == ("audio", "audio/wav", 2)
    topped = await p.client.post(
        f"/v1/accounts/{p.account_id}/top-ups", json={"amount": 25}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert topped.status_code == 200, topped.text
    assert topped.json() == {"account_id": p.account_id, "balance": 25 - PRICE}
    ready = await p.wait_for(asset["id"], "ready")
    assert ready["size"] == len(wav) and ready["upload_url"] is None
    listed = await p.client.get("/v1/assets", params={"project_id": p.project_id}, headers=p.auth)
    assert [a["id"] for a in listed.json()["data"]] == [asset["id"]]
    deleted = await p.client.delete(f"/v1/assets/{asset['id']}", headers=p.auth)
    assert deleted.status_code == 204
    gone = await p.client.get(f"/v1/assets/{asset['id']}", headers=p.auth)
    assert gone.status_code == 404


async def test_ids_postgres_cannot_store_are_answered_not_found_not_500(platform: Platform) -> None:
    p = platform
    assert (await p.client.get("/v1/assets/%00", headers=p.auth)).status_code == 404
    created = await p.client.post("/v1/assets", json={"project_id": "proj\u0000", "size": 10}, headers=p.auth)
    assert created.status_code == 404, created.text
    assert created.json()["error"]["code"] == "not_found"
    listed = await p.client.get("/v1/assets", params={"project_id": "p\x00"}, headers=p.auth)
    assert listed.status_code == 404, listed.text
    topped = await p.client.post(
        "/v1/accounts/acct%00/top-ups", json={"amount": 1}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert topped.status_code == 404, topped.text
    # The same through tus creation, the project in Upload-Metadata.
    metadata = "project_id " + base64.b64encode(b"proj\x00").decode()
    refused = await p.client.post(
        "/files/", headers={**TUS, **p.auth, "Upload-Length": "10", "Upload-Metadata": metadata}
    )
    assert refused.status_code == 404, refused.text
    # Nothing was recorded for any of them.
    listed = await p.client.get("/v1/assets", params={"project_id": p.project_id}, headers=p.auth)
    assert listed.json()["data"] == []
    # And the database still answers (what /readyz asks).
    await p.app.check_database()
