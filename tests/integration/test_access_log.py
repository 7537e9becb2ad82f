"""One access-log line per request, with a request id, and no secrets."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
from ops_helpers import LoggedServer, logged_server

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
SECRET_KEY = "sk_live_0123456789abcdefSECRET"
SECRET_NAME = "salary-review-2024.mov"


def access_lines(server: LoggedServer, count: int) -> list[dict[str, Any]]:
    """The JSON access lines, once `count` of them are written."""
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        found = [line for line in lines if line["logger"] == "tusd_py.access"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_json_lines_with_ids_bytes_and_status(tmp_path: Path) -> None:
    with logged_server(tmp_path / "data", tmp_path / "log", "--log-format", "json") as server:
        created = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": "11", "X-Request-ID": "req-42.a:b"})
        assert created.headers["X-Request-ID"] == "req-42.a:b"
        url = created.headers["Location"]
        upload_id = url.rsplit("/", 1)[-1]
        patched = httpx.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"hello world")
        generated = patched.headers["X-Request-ID"]
        assert len(generated) == 32
        downloaded = httpx.get(url)
        assert downloaded.content == b"hello world"
        lines = access_lines(server, 3)
    post, patch, get = lines[:3]
    assert post["request_id"] == "req-42.a:b"
    assert (post["method"], post["path"], post["status"], post["upload_id"]) == ("POST", "/files/", 201, upload_id)
    assert patch["request_id"] == generated
    assert (patch["method"], patch["status"], patch["upload_id"], patch["bytes_received"]) == (
        "PATCH",
        204,
        upload_id,
        11,
    )
    assert (get["status"], get["bytes_sent"], get["upload_id"]) == (200, 11, upload_id)
    for line in lines:
        assert line["level"] == "info"
        assert isinstance(line["duration_ms"], float)
        assert line["client"] == "127.0.0.1"


def test_text_format_replaces_uvicorns_access_log(tmp_path: Path) -> None:
    with logged_server(tmp_path / "data", tmp_path / "log") as server:
        response = httpx.options(server.endpoint)
        request_id = response.headers["X-Request-ID"]
        deadline = time.monotonic() + 5
        while f"request_id={request_id}" not in server.log_text():
            assert time.monotonic() < deadline, server.log_text()
            time.sleep(0.05)
        text = server.log_text()
    line = next(line for line in text.splitlines() if f"request_id={request_id}" in line)
    assert "tusd_py.access" in line
    assert "method=OPTIONS path=/files/ status=204" in line
    assert '"OPTIONS /files/ HTTP/1.1"' not in text


def test_no_access_log_means_no_access_lines_at_all(tmp_path: Path) -> None:
    with logged_server(tmp_path / "data", tmp_path / "log", "--no-access-log") as server:
        created = httpx.post(server.endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3"})
        assert created.status_code == 201
    # Stopped: everything it wrote is in the log. Neither ours nor uvicorn's access line.
    text = server.log_text()
    assert "tusd_py.access" not in text
    assert '"POST /files/ HTTP/1.1"' not in text
    assert "Application startup complete" in text


def test_no_secrets_in_the_log(tmp_path: Path) -> None:
    metadata = "filename " + base64.b64encode(SECRET_NAME.encode()).decode()
    with logged_server(tmp_path / "data", tmp_path / "log", "--assets", "--log-format", "json") as server:
        headers = {"Authorization": f"Bearer {SECRET_KEY}", "X-Request-ID": SECRET_KEY}
        refused = httpx.post(
            server.origin + "/v1/assets?token=" + SECRET_KEY, headers=headers, json={"project_id": "p", "size": 1}
        )
        assert refused.status_code == 401
        # A key shaped like a request id is not echoed back either.
        assert SECRET_KEY not in refused.headers["X-Request-ID"]
        tus = httpx.post(
            server.endpoint,
            headers={**TUS, **headers, "Upload-Length": "4", "Upload-Metadata": metadata},
        )
        assert tus.status_code == 401
        httpx.get(f"{server.origin}/files/{SECRET_KEY}", headers=TUS)
        lines = access_lines(server, 3)
        text = server.log_text()
    assert len(lines) == 3
    assert lines[2]["path"] == "/files/sk_[redacted]"
    for secret in (SECRET_KEY, "0123456789abcdefSECRET", SECRET_NAME, metadata.split()[1], "token="):
        assert secret not in text
