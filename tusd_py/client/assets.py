"""The asset API calls `tusd-py upload` makes: create an asset, then watch its state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from .tus import ClientError, Notice, RetryPolicy, check, send_request

# States an asset leaves by itself; the others are where it rests.
MOVING = frozenset({"pending_upload", "processing"})


class AssetApi:
    """`POST /v1/assets` and `GET /v1/assets/{id}` under `api_url`, with a bearer key."""

    def __init__(
        self, http: httpx.Client, api_url: str, key: str, *, policy: RetryPolicy, notice: Notice = lambda text: None
    ) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.auth = {"Authorization": f"Bearer {key}"}
        self.policy = policy
        self.notice = notice

    def _call(self, method: str, url: str, expected: int, **kwargs: Any) -> httpx.Response:
        # A retried POST after a dropped answer may leave an orphan asset in pending_upload:
        # it is never charged, and that beats failing the command.
        return self.policy.run(
            lambda: check(send_request(self.http, method, url, headers=self.auth, **kwargs), expected), self.notice
        )

    def create(self, project_id: str, size: int, language: str | None = None) -> tuple[str, str]:
        """Opens the asset's upload; returns (asset id, absolute upload URL)."""
        body: dict[str, Any] = {"project_id": project_id, "size": size}
        if language is not None:
            body["language"] = language
        response = self._call("POST", f"{self.api_url}/v1/assets", 201, json=body)
        asset = _json_object(response)
        location = response.headers.get("Location") or asset.get("upload_url")
        if not isinstance(location, str) or not isinstance(asset.get("id"), str):
            raise ClientError("the asset API answered 201 without an asset id and upload URL")
        return asset["id"], str(response.url.join(location))

    def get(self, asset_id: str) -> dict[str, Any]:
        url = f"{self.api_url}/v1/assets/{asset_id}"
        return _json_object(self._call("GET", url, 200))

    def wait(
        self,
        asset_id: str,
        timeout: float,
        *,
        interval: float = 0.25,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Poll until the asset leaves pending_upload/processing, or `timeout` passes."""
        deadline = clock() + timeout
        while True:
            asset = self.get(asset_id)
            if asset.get("state") not in MOVING or clock() >= deadline:
                return asset
            sleep(min(interval, max(0.0, deadline - clock())))
            # Processing a long file takes a while: no need to ask four times a second.
            interval = min(interval * 1.5, 2.0)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ClientError(f"{response.request.method} {response.request.url} did not answer with a JSON object")
    return body
