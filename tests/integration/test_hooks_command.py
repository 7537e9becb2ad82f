"""Command hooks (`--hooks-dir`): one shell script per event, JSON on stdin and stdout."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer, start_server
from hooks_receiver import uploads_in

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}

PRE_CREATE = """#!/bin/sh
event=$(cat)
case "$event" in
  *forbidden*) echo '{"RejectUpload": true, "HTTPResponse": {"StatusCode": 403, "Body": "no"}}' ;;
  *rename-me*) echo '{"ChangeFileInfo": {"ID": "renamed-by-script"}}' ;;
  *) echo '{}' ;;
esac
"""
POST_FINISH = """#!/bin/sh
# One event per line; the hook type also arrives in the environment.
printf '%s\\n' "$(cat)" >> "{log}"
echo "$TUS_HOOK_TYPE $TUS_ID" >> "{log}.env"
"""
PRE_TERMINATE = """#!/bin/sh
cat > /dev/null
echo "refusing" >&2
exit 3
"""
PRE_FINISH = """#!/bin/sh
cat > /dev/null
echo 'not json at all'
"""


def write_script(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture(scope="module")
def hooks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hooks")
    write_script(directory, "pre-create", PRE_CREATE)
    write_script(directory, "post-finish", POST_FINISH.replace("{log}", str(directory / "finished.jsonl")))
    write_script(directory, "pre-terminate", PRE_TERMINATE)
    write_script(directory, "pre-finish", PRE_FINISH)
    # Not executable: must be ignored rather than failing post-create.
    (directory / "post-create").write_text("#!/bin/sh\nexit 1\n")
    return directory


@pytest.fixture(scope="module")
def tus(hooks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("uploads"), "--hooks-dir", str(hooks_dir))
    yield server
    server.stop()


def create(tus: RunningServer, length: int, filename: str) -> httpx.Response:
    metadata = "filename " + base64.b64encode(filename.encode()).decode()
    return httpx.post(tus.endpoint, headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata})


def test_pre_create_script_rejects_by_metadata(tus: RunningServer) -> None:
    before = uploads_in(tus.upload_dir)

    response = create(tus, 4, "forbidden.txt")

    assert response.status_code == 403
    assert response.text.strip() == "no"
    assert uploads_in(tus.upload_dir) == before


def test_pre_create_script_changes_the_id(tus: RunningServer) -> None:
    response = create(tus, 5, "rename-me.txt")

    assert response.status_code == 201
    assert response.headers["Location"] == tus.endpoint + "renamed-by-script"


def test_post_finish_script_gets_the_event_on_stdin(tus: RunningServer, hooks_dir: Path) -> None:
    # The pre-finish script always prints garbage; without it the upload can finish.
    (hooks_dir / "pre-finish").chmod(0o644)
    try:
        created = create(tus, 5, "allowed.txt")
        assert created.status_code == 201, created.text
        url = created.headers["Location"]
        patched = httpx.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"hello")
        assert patched.status_code == 204
    finally:
        (hooks_dir / "pre-finish").chmod(0o755)
    upload_id = url.rsplit("/", 1)[-1]

    log = hooks_dir / "finished.jsonl"
    deadline = time.monotonic() + 10
    while upload_id not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "post-finish script never ran for the upload"
        time.sleep(0.05)

    events = [json.loads(line) for line in log.read_text().splitlines() if upload_id in line]
    assert len(events) == 1
    (event,) = events
    assert event["Type"] == "post-finish"
    assert event["Event"]["Upload"]["Offset"] == 5
    assert event["Event"]["Upload"]["MetaData"] == {"filename": "allowed.txt"}
    assert event["Event"]["HTTPRequest"]["Method"] == "PATCH"
    assert f"post-finish {upload_id}" in (hooks_dir / "finished.jsonl.env").read_text()


def test_failing_pre_terminate_script_is_a_502_and_keeps_the_upload(tus: RunningServer) -> None:
    url = create(tus, 5, "keep.txt").headers["Location"]

    response = httpx.delete(url, headers=TUS)

    assert response.status_code == 502
    assert "Traceback" not in response.text
    assert httpx.head(url, headers=TUS).status_code == 200


def test_pre_finish_script_printing_garbage_is_a_502_bytes_kept(tus: RunningServer) -> None:
    url = create(tus, 3, "garbage.txt").headers["Location"]

    response = httpx.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"abc")

    assert response.status_code == 502
    assert httpx.head(url, headers=TUS).headers["Upload-Offset"] == "3"
