"""The asset API under /v1 and asset creation on the tus endpoint, against `tusd-py serve`.

Accounts, projects and keys are made with the admin CLI on the server's own database.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from asset_admin import Tenant, cli_json, make_project, make_tenant
from conftest import RunningServer, start_server
from media_factory import make_audio

MAX_SIZE = 1_000_000
ADMIN_TOKEN = "admin-secret-token"
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
ASSET_FIELDS = {
    "id",
    "project_id",
    "kind",
    "state",
    "extension",
    "size",
    "mime_type",
    "duration",
    "language",
    "created_at",
    "error_code",
    "error_message",
    "upload_url",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
SEED_DURATION = re.compile(r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$")


@dataclass(frozen=True)
class Platform:
    server: RunningServer
    alice: Tenant
    bob: Tenant
    revoked_key: str

    @property
    def origin(self) -> str:
        return self.server.origin

    @property
    def data_dir(self) -> Path:
        return self.server.upload_dir


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    server = start_server(
        tmp_path_factory.mktemp("api") / "data",
        "--assets",
        "--max-size",
        str(MAX_SIZE),
        "--admin-token",
        ADMIN_TOKEN,
    )
    try:
        with ThreadPoolExecutor(2) as pool:
            alice_future = pool.submit(make_tenant, server.upload_dir, "alice")
            bob_future = pool.submit(make_tenant, server.upload_dir, "bob")
            alice, bob = alice_future.result(), bob_future.result()
        spare = cli_json(server.upload_dir, "keys", "create", "--account", alice.account_id)
        cli_json(server.upload_dir, "keys", "revoke", spare["id"])
        yield Platform(server, alice, bob, spare["key"])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def unlimited(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A second server on the same database, without --max-size and without an admin token."""
    server = start_server(
        tmp_path_factory.mktemp("unlimited") / "data",
        "--assets",
        "--database",
        str(platform.data_dir / "assets.sqlite3"),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


# -- helpers ----------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body  # type: ignore[no-any-return]


def assert_unauthorized(response: httpx.Response) -> None:
    assert_error(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def create(
    client: httpx.Client, platform: Platform, tenant: Tenant, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(f"{platform.origin}/v1/assets", json=body, headers={**tenant.auth, **(headers or {})})


def create_asset(
    client: httpx.Client, platform: Platform, tenant: Tenant, size: int = 100, project_id: str | None = None
) -> dict[str, Any]:
    response = create(client, platform, tenant, {"project_id": project_id or tenant.project_id, "size": size})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def get_asset(client: httpx.Client, platform: Platform, tenant: Tenant, asset_id: str) -> httpx.Response:
    return client.get(f"{platform.origin}/v1/assets/{asset_id}", headers=tenant.auth)


def list_assets(client: httpx.Client, platform: Platform, tenant: Tenant, **params: str) -> httpx.Response:
    return client.get(f"{platform.origin}/v1/assets", params=params, headers=tenant.auth)


def top_up(client: httpx.Client, platform: Platform, account_id: str, body: Any, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(f"{platform.origin}/v1/accounts/{account_id}/top-ups", json=body, headers=headers)


def metadata(**pairs: str) -> str:
    # A key with an empty value goes alone, as the tus spec writes it.
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" if value else key for key, value in pairs.items()
    )


def parse_metadata(header: str) -> dict[str, str]:
    pairs = {}
    for item in header.split(","):
        key, _, value = item.strip().partition(" ")
        pairs[key] = base64.b64decode(value).decode() if value else ""
    return pairs


def tus_create(client: httpx.Client, platform: Platform, headers: dict[str, str], length: int = 100) -> httpx.Response:
    return client.post(f"{platform.origin}/files/", headers={**TUS, "Upload-Length": str(length), **headers})


def upload_files(platform: Platform) -> set[str]:
    return {path.name for path in platform.data_dir.iterdir() if not path.name.startswith("assets.sqlite3")}


def wait_for_state(
    client: httpx.Client, platform: Platform, tenant: Tenant, asset_id: str, states: set[str], timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = get_asset(client, platform, tenant, asset_id)
        assert response.status_code == 200, response.text
        asset: dict[str, Any] = response.json()
        if asset["state"] in states or time.monotonic() > deadline:
            return asset
        time.sleep(0.1)


# -- POST /v1/assets ----------------------------------------------------------------------


def test_create_answers_201_with_exactly_the_seed_fields(client: httpx.Client, platform: Platform) -> None:
    before = datetime.now(UTC)
    response = create(client, platform, platform.alice, {"project_id": platform.alice.project_id, "size": 1234})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    asset = response.json()
    assert set(asset) == ASSET_FIELDS
    assert asset["project_id"] == platform.alice.project_id
    assert asset["state"] == "pending_upload"
    assert isinstance(asset["id"], str) and asset["id"]
    # Nothing is known about the bytes yet, and nothing fails or is measured.
    for field in ("kind", "extension", "mime_type", "size", "duration", "language", "error_code", "error_message"):
        assert asset[field] is None, field
    assert asset["upload_url"] == response.headers["location"]
    url = urlsplit(asset["upload_url"])
    assert (url.scheme, url.netloc) == ("http", f"127.0.0.1:{platform.server.port}")
    assert url.path == f"/files/{asset['id']}"
    assert RFC3339_UTC.match(asset["created_at"]), asset["created_at"]
    created_at = datetime.fromisoformat(asset["created_at"])
    assert created_at.utcoffset() is not None and created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before.timestamp() - 1 <= created_at.timestamp() <= datetime.now(UTC).timestamp() + 1


def test_get_answers_the_same_asset_as_create(client: httpx.Client, platform: Platform) -> None:
    created = create_asset(client, platform, platform.alice)
    response = get_asset(client, platform, platform.alice, created["id"])
    assert response.status_code == 200
    assert response.json() == created


def test_transfer_url_takes_head_and_patch_without_a_key(client: httpx.Client, platform: Platform) -> None:
    media = make_audio(platform.data_dir.parent / "speech.wav", "wav", 1.0).read_bytes()
    asset = create_asset(client, platform, platform.alice, size=len(media))
    head = client.head(asset["upload_url"], headers=TUS)
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", str(len(media)))
    patch = client.patch(asset["upload_url"], headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=media)
    assert patch.status_code == 204, patch.text
    assert patch.headers["upload-offset"] == str(len(media))
    done = wait_for_state(client, platform, platform.alice, asset["id"], {"ready", "failed"})
    assert done["state"] == "ready", done
    assert (done["kind"], done["extension"], done["mime_type"]) == ("audio", "wav", "audio/wav")
    assert done["size"] == len(media)
    assert done["upload_url"] is None
    assert SEED_DURATION.match(done["duration"])
    assert abs(Decimal(done["duration"]) - 1) <= Decimal("0.1")


def test_transfer_url_cannot_delete_the_bytes_of_a_ready_asset(client: httpx.Client, platform: Platform) -> None:
    media = make_audio(platform.data_dir.parent / "kept.wav", "wav", 1.0).read_bytes()
    asset = create_asset(client, platform, platform.alice, size=len(media))
    patch = client.patch(asset["upload_url"], headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=media)
    assert patch.status_code == 204, patch.text
    assert wait_for_state(client, platform, platform.alice, asset["id"], {"ready", "failed"})["state"] == "ready"
    # upload_url is null once the upload is final: the old URL is no capability any more.
    response = client.delete(asset["upload_url"], headers=TUS)
    assert (platform.data_dir / asset["id"]).exists(), f"bytes removed by an anonymous {response.status_code}"
    assert response.status_code >= 400
    assert get_asset(client, platform, platform.alice, asset["id"]).json()["state"] == "ready"


@pytest.mark.parametrize(
    ("language", "stored"),
    [("DE", "de"), ("en", "en"), ("Fr", "fr"), (None, None)],
)
def test_language_is_lowercased_or_null(
    client: httpx.Client, platform: Platform, language: str | None, stored: str | None
) -> None:
    body = {"project_id": platform.alice.project_id, "size": 10, "language": language}
    response = create(client, platform, platform.alice, body)
    assert response.status_code == 201, response.text
    assert response.json()["language"] == stored
    assert get_asset(client, platform, platform.alice, response.json()["id"]).json()["language"] == stored


@pytest.mark.parametrize("language", ["xx", "deu", "d", "", " de", "d1", "\u212a\u212a", 12, True, ["de"], {"de": 1}])
def test_language_that_is_no_iso_639_1_code_is_refused(
    client: httpx.Client, platform: Platform, language: object
) -> None:
    body = {"project_id": platform.alice.project_id, "size": 10, "language": language}
    assert_error(create(client, platform, platform.alice, body), 422)


@pytest.mark.parametrize("size", ["-1", "1.5", "10.0", "1e2", "1e400", '"10"', "true", "false", "null", "[10]"])
def test_size_that_is_no_non_negative_integer_is_refused(client: httpx.Client, platform: Platform, size: str) -> None:
    # Raw JSON text: 1e400 is valid JSON that no Python float survives being encoded from.
    content = f'{{"project_id": "{platform.alice.project_id}", "size": {size}}}'
    headers = {**platform.alice.auth, "Content-Type": "application/json"}
    assert_error(client.post(f"{platform.origin}/v1/assets", content=content, headers=headers), 422)


def test_missing_size_is_refused(client: httpx.Client, platform: Platform) -> None:
    assert_error(create(client, platform, platform.alice, {"project_id": platform.alice.project_id}), 422)


def test_size_over_max_size_is_refused_with_413(client: httpx.Client, platform: Platform) -> None:
    before = upload_files(platform)
    body = {"project_id": platform.alice.project_id, "size": MAX_SIZE + 1}
    assert_error(create(client, platform, platform.alice, body), 413)
    assert upload_files(platform) == before
    assert create(client, platform, platform.alice, {**body, "size": MAX_SIZE}).status_code == 201


@pytest.mark.parametrize("project_id", [None, 42, "", ["p"]])
def test_project_id_that_is_no_string_is_refused(client: httpx.Client, platform: Platform, project_id: object) -> None:
    assert_error(create(client, platform, platform.alice, {"project_id": project_id, "size": 10}), 422)


def test_missing_project_id_is_refused(client: httpx.Client, platform: Platform) -> None:
    assert_error(create(client, platform, platform.alice, {"size": 10}), 422)


@pytest.mark.parametrize("extra", [{"name": "x"}, {"state": "ready"}, {"kind": "audio"}, {"id": "mine"}])
def test_unknown_or_read_only_fields_are_refused(
    client: httpx.Client, platform: Platform, extra: dict[str, str]
) -> None:
    body = {"project_id": platform.alice.project_id, "size": 10, **extra}
    assert_error(create(client, platform, platform.alice, body), 422)


@pytest.mark.parametrize("content", [b"{", b"", b"{'project_id': 1}", b"\xff\xfe{}", b"NaN]"])
def test_body_that_is_not_json_is_refused_with_400(client: httpx.Client, platform: Platform, content: bytes) -> None:
    headers = {**platform.alice.auth, "Content-Type": "application/json"}
    response = client.post(f"{platform.origin}/v1/assets", content=content, headers=headers)
    assert_error(response, 400)


def test_oversized_json_body_is_refused_with_413(client: httpx.Client, platform: Platform) -> None:
    body = {"project_id": platform.alice.project_id, "size": 10, "language": "x" * (128 * 1024)}
    assert_error(create(client, platform, platform.alice, body), 413)


@pytest.mark.parametrize("content", [b"[]", b'["project_id", 10]', b'"text"', b"10", b"null"])
def test_json_that_is_not_an_object_is_refused_with_422(
    client: httpx.Client, platform: Platform, content: bytes
) -> None:
    headers = {**platform.alice.auth, "Content-Type": "application/json"}
    assert_error(client.post(f"{platform.origin}/v1/assets", content=content, headers=headers), 422)


def test_deeply_nested_json_is_refused_without_a_server_error(client: httpx.Client, platform: Platform) -> None:
    headers = {**platform.alice.auth, "Content-Type": "application/json"}
    response = client.post(f"{platform.origin}/v1/assets", content=b"[" * 5000, headers=headers)
    assert response.status_code in (400, 422), response.text
    assert_error(response, response.status_code)


def test_project_id_with_a_lone_surrogate_is_refused_without_a_server_error(
    client: httpx.Client, platform: Platform
) -> None:
    headers = {**platform.alice.auth, "Content-Type": "application/json"}
    content = b'{"project_id": "\\ud800", "size": 10}'
    response = client.post(f"{platform.origin}/v1/assets", content=content, headers=headers)
    assert response.status_code in (404, 422), response.text
    assert_error(response, response.status_code)


def test_size_past_64_bits_is_refused_without_a_server_error(
    client: httpx.Client, platform: Platform, unlimited: RunningServer
) -> None:
    response = client.post(
        f"{unlimited.origin}/v1/assets",
        json={"project_id": platform.alice.project_id, "size": 2**63},
        headers=platform.alice.auth,
    )
    assert response.status_code in (413, 422), response.text
    assert_error(response, response.status_code)


def test_size_up_to_64_bits_is_accepted_without_max_size(
    client: httpx.Client, platform: Platform, unlimited: RunningServer
) -> None:
    response = client.post(
        f"{unlimited.origin}/v1/assets",
        json={"project_id": platform.alice.project_id, "size": 2**40},
        headers=platform.alice.auth,
    )
    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith(f"{unlimited.origin}/files/")


# -- authentication and ownership -------------------------------------------------------------


def bad_auth_headers(platform: Platform) -> list[dict[str, str]]:
    return [
        {},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer sk_" + "A" * 43},
        {"Authorization": "Bearer " + platform.alice.key + "x"},
        {"Authorization": platform.alice.key},
        {"Authorization": f"Bearer {platform.revoked_key}"},
    ]


AUTH_CASES = ["none", "basic", "bearer-only", "malformed", "unknown", "altered", "no-scheme", "revoked"]


@pytest.mark.parametrize("case", range(len(AUTH_CASES)), ids=AUTH_CASES)
def test_every_route_refuses_a_bad_key_with_401(client: httpx.Client, platform: Platform, case: int) -> None:
    asset = create_asset(client, platform, platform.alice)
    headers = bad_auth_headers(platform)[case]
    api = f"{platform.origin}/v1/assets"
    body = {"project_id": platform.alice.project_id, "size": 10}
    assert_unauthorized(client.post(api, json=body, headers=headers))
    assert_unauthorized(client.get(api, params={"project_id": platform.alice.project_id}, headers=headers))
    assert_unauthorized(client.get(f"{api}/{asset['id']}", headers=headers))
    assert_unauthorized(client.delete(f"{api}/{asset['id']}", headers=headers))
    assert get_asset(client, platform, platform.alice, asset["id"]).status_code == 200


def test_scheme_is_case_insensitive(client: httpx.Client, platform: Platform) -> None:
    body = {"project_id": platform.alice.project_id, "size": 10}
    response = create(client, platform, platform.alice, body, {"Authorization": f"bearer {platform.alice.key}"})
    assert response.status_code == 201, response.text


def test_another_accounts_project_is_answered_like_a_missing_one(client: httpx.Client, platform: Platform) -> None:
    before = upload_files(platform)
    foreign = create(client, platform, platform.alice, {"project_id": platform.bob.project_id, "size": 10})
    missing = create(client, platform, platform.alice, {"project_id": "proj_" + "0" * 32, "size": 10})
    assert_error(foreign, 404)
    assert (foreign.status_code, foreign.content) == (missing.status_code, missing.content)
    assert upload_files(platform) == before
    foreign_list = list_assets(client, platform, platform.alice, project_id=platform.bob.project_id)
    missing_list = list_assets(client, platform, platform.alice, project_id="proj_" + "0" * 32)
    assert_error(foreign_list, 404)
    assert (foreign_list.status_code, foreign_list.content) == (missing_list.status_code, missing_list.content)


def test_another_accounts_asset_is_answered_like_a_missing_one(client: httpx.Client, platform: Platform) -> None:
    bobs = create_asset(client, platform, platform.bob)
    foreign = get_asset(client, platform, platform.alice, bobs["id"])
    missing = get_asset(client, platform, platform.alice, "0" * 32)
    assert_error(foreign, 404)
    assert (foreign.status_code, foreign.content) == (missing.status_code, missing.content)
    deleted = client.delete(f"{platform.origin}/v1/assets/{bobs['id']}", headers=platform.alice.auth)
    assert_error(deleted, 404)
    assert get_asset(client, platform, platform.bob, bobs["id"]).json() == bobs
    assert client.head(bobs["upload_url"], headers=TUS).status_code == 200


# -- GET /v1/assets -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(client: httpx.Client, platform: Platform) -> tuple[str, list[str], str]:
    """A project with 7 open assets and, created last, one that failed on non-media bytes."""
    project_id = make_project(platform.data_dir, platform.alice.account_id, "listing")
    ids = [create_asset(client, platform, platform.alice, project_id=project_id)["id"] for _ in range(7)]
    junk = b"%PDF-1.7 this is no audio or video" * 4
    failed = create_asset(client, platform, platform.alice, size=len(junk), project_id=project_id)
    patch = client.patch(failed["upload_url"], headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=junk)
    assert_error(patch, 415, "unsupported_media_type")
    return project_id, ids, failed["id"]


def test_list_pages_newest_first_without_duplicates_or_gaps(
    client: httpx.Client, platform: Platform, listed: tuple[str, list[str], str]
) -> None:
    project_id, ids, failed_id = listed
    pages: list[list[dict[str, Any]]] = []
    params = {"project_id": project_id, "limit": "3"}
    while True:
        response = list_assets(client, platform, platform.alice, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_cursor"}
        pages.append(body["data"])
        if body["next_cursor"] is None:
            break
        assert len(pages) < 10, "the cursor never ends"
        params = {**params, "cursor": body["next_cursor"]}
    assert [len(page) for page in pages] == [3, 3, 2]
    seen = [asset["id"] for page in pages for asset in page]
    assert seen == [failed_id, *reversed(ids)]
    for page in pages:
        for asset in page:
            assert set(asset) == ASSET_FIELDS
            assert asset == get_asset(client, platform, platform.alice, asset["id"]).json()


def test_list_filters_by_state(client: httpx.Client, platform: Platform, listed: tuple[str, list[str], str]) -> None:
    project_id, ids, failed_id = listed
    failed = list_assets(client, platform, platform.alice, project_id=project_id, state="failed").json()
    assert [asset["id"] for asset in failed["data"]] == [failed_id]
    assert failed["data"][0]["error_code"] == "unsupported_media_type"
    assert failed["data"][0]["upload_url"] is None
    pending = list_assets(client, platform, platform.alice, project_id=project_id, state="pending_upload").json()
    assert [asset["id"] for asset in pending["data"]] == list(reversed(ids))
    ready = list_assets(client, platform, platform.alice, project_id=project_id, state="ready").json()
    assert ready == {"data": [], "next_cursor": None}


def test_list_default_limit_returns_everything_small(
    client: httpx.Client, platform: Platform, listed: tuple[str, list[str], str]
) -> None:
    project_id, ids, _ = listed
    body = list_assets(client, platform, platform.alice, project_id=project_id).json()
    assert len(body["data"]) == len(ids) + 1
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"limit": "0"}, 422),
        ({"limit": "101"}, 422),
        ({"limit": "-1"}, 422),
        ({"limit": "abc"}, 422),
        ({"limit": "1.5"}, 422),
        ({"limit": ""}, 422),
        ({"state": "done"}, 422),
        ({"state": ""}, 422),
        ({"state": "READY"}, 422),
        ({"cursor": "!!!"}, 400),
        ({"cursor": "abc"}, 400),
        ({"cursor": base64.urlsafe_b64encode(b"x:y").decode()}, 400),
        ({"cursor": ""}, 400),
    ],
)
def test_list_refuses_bad_parameters(
    client: httpx.Client, platform: Platform, listed: tuple[str, list[str], str], params: dict[str, str], status: int
) -> None:
    project_id, _, _ = listed
    assert_error(list_assets(client, platform, platform.alice, project_id=project_id, **params), status)


def test_list_requires_a_project(client: httpx.Client, platform: Platform) -> None:
    assert_error(list_assets(client, platform, platform.alice), 422)


def test_list_refuses_a_superscript_digit_limit(
    client: httpx.Client, platform: Platform, listed: tuple[str, list[str], str]
) -> None:
    project_id, _, _ = listed
    assert_error(list_assets(client, platform, platform.alice, project_id=project_id, limit="\u00b2"), 422)


def test_list_refuses_a_cursor_past_64_bits(
    client: httpx.Client, platform: Platform, listed: tuple[str, list[str], str]
) -> None:
    project_id, _, _ = listed
    cursor = base64.urlsafe_b64encode(b"99999999999999999999999:x").decode().rstrip("=")
    assert_error(list_assets(client, platform, platform.alice, project_id=project_id, cursor=cursor), 400)


# -- DELETE /v1/assets/{id} -------------------------------------------------------------------


def test_delete_ends_the_upload_and_removes_the_bytes(client: httpx.Client, platform: Platform) -> None:
    asset = create_asset(client, platform, platform.alice, size=1000)
    patch = client.patch(
        asset["upload_url"], headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=make_head_of_wav()
    )
    assert patch.status_code == 204, patch.text
    data_file = platform.data_dir / asset["id"]
    assert data_file.exists()
    response = client.delete(f"{platform.origin}/v1/assets/{asset['id']}", headers=platform.alice.auth)
    assert response.status_code == 204, response.text
    assert client.head(asset["upload_url"], headers=TUS).status_code == 404
    assert not data_file.exists()
    assert not any(name.startswith(asset["id"]) for name in upload_files(platform))
    assert_error(get_asset(client, platform, platform.alice, asset["id"]), 404)
    listed = list_assets(client, platform, platform.alice, project_id=platform.alice.project_id, limit="100").json()
    assert asset["id"] not in {item["id"] for item in listed["data"]}
    again = client.delete(f"{platform.origin}/v1/assets/{asset['id']}", headers=platform.alice.auth)
    assert_error(again, 404)


def make_head_of_wav() -> bytes:
    """The first 200 bytes of a WAV file: enough for detection, not the whole file."""
    header = (
        b"RIFF"
        + (36 + 800).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + (8000).to_bytes(4, "little")
        + (16000).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + (800).to_bytes(4, "little")
    )
    return header + bytes(200 - len(header))


# -- POST /v1/accounts/{id}/top-ups ---------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token", ADMIN_TOKEN + "x", "api-key"])
def test_top_up_needs_the_admin_token(client: httpx.Client, platform: Platform, token: str | None) -> None:
    if token == "api-key":
        token = platform.alice.key
    assert_unauthorized(top_up(client, platform, platform.bob.account_id, {"amount": 10}, token))


@pytest.mark.parametrize(
    "body", [{"amount": 0}, {"amount": -5}, {"amount": 1.5}, {"amount": "5"}, {"amount": True}, {"amount": None}, {}]
)
def test_top_up_refuses_an_amount_that_is_not_a_positive_integer(
    client: httpx.Client, platform: Platform, body: dict[str, Any]
) -> None:
    assert_error(top_up(client, platform, platform.bob.account_id, body, ADMIN_TOKEN), 422)


def test_top_up_refuses_unknown_fields_and_non_objects(client: httpx.Client, platform: Platform) -> None:
    assert_error(top_up(client, platform, platform.bob.account_id, {"amount": 5, "note": "x"}, ADMIN_TOKEN), 422)
    assert_error(top_up(client, platform, platform.bob.account_id, [5], ADMIN_TOKEN), 422)
    invalid = client.post(
        f"{platform.origin}/v1/accounts/{platform.bob.account_id}/top-ups",
        content=b"{amount: 5}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    assert_error(invalid, 400)


def test_top_up_of_an_unknown_account_is_404(client: httpx.Client, platform: Platform) -> None:
    assert_error(top_up(client, platform, "acct_" + "0" * 32, {"amount": 5}, ADMIN_TOKEN), 404)


def test_top_up_credits_the_account(client: httpx.Client, platform: Platform) -> None:
    account_id = cli_json(platform.data_dir, "accounts", "create", "payer")["id"]
    first = top_up(client, platform, account_id, {"amount": 700}, ADMIN_TOKEN)
    assert first.status_code == 200, first.text
    assert first.json() == {"account_id": account_id, "balance": 700}
    second = top_up(client, platform, account_id, {"amount": 5}, ADMIN_TOKEN)
    assert second.json() == {"account_id": account_id, "balance": 705}


def test_top_up_is_closed_without_an_admin_token(
    client: httpx.Client, platform: Platform, unlimited: RunningServer
) -> None:
    for token in (ADMIN_TOKEN, "x"):
        response = client.post(
            f"{unlimited.origin}/v1/accounts/{platform.bob.account_id}/top-ups",
            json={"amount": 5},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert_unauthorized(response)


def test_top_up_refuses_deeply_nested_json_without_a_server_error(client: httpx.Client, platform: Platform) -> None:
    response = client.post(
        f"{platform.origin}/v1/accounts/{platform.bob.account_id}/top-ups",
        content=b"[" * 5000,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text


def test_top_up_never_turns_the_balance_into_a_float(client: httpx.Client, platform: Platform) -> None:
    account_id = cli_json(platform.data_dir, "accounts", "create", "whale")["id"]
    assert top_up(client, platform, account_id, {"amount": 2**62}, ADMIN_TOKEN).status_code == 200
    second = top_up(client, platform, account_id, {"amount": 2**62}, ADMIN_TOKEN)
    assert second.status_code in (200, 409, 422), second.text
    if second.status_code == 200:
        assert json.loads(second.text, parse_float=str)["balance"] == 2**63
    else:
        assert_error(second, second.status_code)


# -- creating an asset on the tus endpoint -------------------------------------------------------


def test_tus_creation_with_the_key_in_metadata_creates_the_same_asset(client: httpx.Client, platform: Platform) -> None:
    alice = platform.alice
    headers = {
        "Upload-Metadata": metadata(project_id=alice.project_id, api_key=alice.key, language="EN", filename="a.mp3")
    }
    response = tus_create(client, platform, headers, length=4321)
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    asset_id = urlsplit(location).path.rsplit("/", 1)[-1]
    asset = get_asset(client, platform, alice, asset_id)
    assert asset.status_code == 200, asset.text
    body = asset.json()
    assert set(body) == ASSET_FIELDS
    assert (body["id"], body["project_id"], body["state"]) == (asset_id, alice.project_id, "pending_upload")
    assert body["language"] == "en"
    assert body["upload_url"] == location
    head = client.head(location, headers=TUS)
    assert head.status_code == 200
    assert head.headers["upload-length"] == "4321"
    stored = parse_metadata(head.headers["upload-metadata"])
    assert "api_key" not in stored
    assert stored["project_id"] == alice.project_id
    assert stored["filename"] == "a.mp3"
    assert alice.key.encode() not in (platform.data_dir / f"{asset_id}.info").read_bytes()


def test_tus_creation_with_the_key_in_the_authorization_header(client: httpx.Client, platform: Platform) -> None:
    headers = {**platform.alice.auth, "Upload-Metadata": metadata(project_id=platform.alice.project_id)}
    response = tus_create(client, platform, headers)
    assert response.status_code == 201, response.text
    asset_id = response.headers["location"].rsplit("/", 1)[-1]
    body = get_asset(client, platform, platform.alice, asset_id).json()
    assert (body["language"], body["upload_url"]) == (None, response.headers["location"])
    assert_error(get_asset(client, platform, platform.bob, asset_id), 404)


@pytest.mark.parametrize("variant", ["none", "unknown", "revoked", "empty"])
def test_tus_creation_without_a_valid_key_is_401_json(client: httpx.Client, platform: Platform, variant: str) -> None:
    keys = {"none": None, "unknown": "sk_" + "B" * 43, "revoked": platform.revoked_key, "empty": ""}
    pairs = {"project_id": platform.alice.project_id}
    key = keys[variant]
    if key is not None:
        pairs["api_key"] = key
    before = upload_files(platform)
    response = tus_create(client, platform, {"Upload-Metadata": metadata(**pairs)})
    assert_unauthorized(response)
    assert upload_files(platform) == before


@pytest.mark.parametrize("whose", ["missing", "another-account"])
def test_tus_creation_in_a_project_not_yours_is_404_json(client: httpx.Client, platform: Platform, whose: str) -> None:
    project_id = "proj_" + "0" * 32 if whose == "missing" else platform.bob.project_id
    headers = {**platform.alice.auth, "Upload-Metadata": metadata(project_id=project_id)}
    before = upload_files(platform)
    response = tus_create(client, platform, headers)
    assert_error(response, 404)
    assert response.json()["error"]["message"] == "project not found"
    assert upload_files(platform) == before


def test_tus_creation_without_project_or_with_a_bad_language_is_422_json(
    client: httpx.Client, platform: Platform
) -> None:
    assert_error(tus_create(client, platform, {**platform.alice.auth, "Upload-Metadata": metadata(a="b")}), 422)
    bad_language = metadata(project_id=platform.alice.project_id, language="xx")
    assert_error(tus_create(client, platform, {**platform.alice.auth, "Upload-Metadata": bad_language}), 422)


def test_tus_creation_with_deferred_length_is_400_json(client: httpx.Client, platform: Platform) -> None:
    headers = {
        **TUS,
        **platform.alice.auth,
        "Upload-Defer-Length": "1",
        "Upload-Metadata": metadata(project_id=platform.alice.project_id),
    }
    before = upload_files(platform)
    assert_error(client.post(f"{platform.origin}/files/", headers=headers), 400)
    assert upload_files(platform) == before
