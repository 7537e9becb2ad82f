"""`tusd-py upload --api-key --project`: a file becomes an asset, and the command reports
its settled state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from upload_helpers import assets_helpers, download, make_file, parse_output, run_upload, state_entries

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import RunningServer

helpers = assets_helpers()


@pytest.fixture
def platform(server_factory: Callable[..., RunningServer], tmp_path: Path) -> Any:
    return helpers.start_platform(server_factory, tmp_path / "data", price=0, balance=0)


@pytest.fixture(scope="module")
def mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(helpers.MediaCache(tmp_path_factory.mktemp("media"))("mp3", 3.0))


def test_an_mp3_ends_ready_with_its_asset_id_printed(platform: Any, mp3: Path, tmp_path: Path) -> None:
    state_file = tmp_path / "uploads.json"
    args = ("--endpoint", platform.server.endpoint, "--api-key", platform.tenant.key)
    done = run_upload(mp3, state_file, *args, "--project", platform.tenant.project_id, "--chunk-size", "16K")
    assert done.returncode == 0, done.stderr
    result = parse_output(done.stdout)
    assert set(result) == {"upload_url", "asset_id", "state"}
    assert result["state"] == "ready"
    assert result["upload_url"] == f"{platform.server.endpoint}{result['asset_id']}"
    asset = platform.asset(result["asset_id"])
    helpers.assert_ready(asset, "mp3", mp3.stat().st_size, 3.0)
    assert asset["project_id"] == platform.tenant.project_id
    assert state_entries(state_file) == []
    # The key never lands in the resume store.
    assert platform.tenant.key not in state_file.read_text()


def test_the_api_url_alone_will_do_and_json_carries_the_asset(platform: Any, mp3: Path, tmp_path: Path) -> None:
    args = ("--api-url", platform.server.origin, "--project", platform.tenant.project_id, "--json", "--no-progress")
    env_key = ("--api-key", platform.tenant.key)
    done = run_upload(mp3, tmp_path / "uploads.json", *env_key, *args, "--language", "EN")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "ready"
    assert result["asset"]["language"] == "en"
    assert result["asset"]["id"] == result["asset_id"]
    # The transfer URL is the capability; once ready the bytes are the server's, unchanged.
    assert platform.asset(result["asset_id"])["size"] == mp3.stat().st_size
    assert download(platform.server.endpoint + result["asset_id"]) == mp3.read_bytes()


def test_bytes_that_are_not_media_are_refused_with_the_servers_message(platform: Any, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    make_file(junk, 200_000)
    args = ("--endpoint", platform.server.endpoint, "--api-key", platform.tenant.key)
    done = run_upload(junk, tmp_path / "uploads.json", *args, "--project", platform.tenant.project_id)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "tusd-py upload: error: 415 Unsupported Media Type: the uploaded bytes are not audio or video"
    )


def test_an_unknown_key_is_refused_before_any_upload(platform: Any, mp3: Path, tmp_path: Path) -> None:
    state_file = tmp_path / "uploads.json"
    args = ("--endpoint", platform.server.endpoint, "--api-key", "sk_not-a-key", "--no-progress")
    done = run_upload(mp3, state_file, *args, "--project", platform.tenant.project_id)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("tusd-py upload: error: 401 Unauthorized: ")
    assert state_entries(state_file) == []
