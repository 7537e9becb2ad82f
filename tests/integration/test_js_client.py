"""tus-js-client (the Node build, run by tests/js/upload.mjs) against a real `tusd-py serve`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.conftest import RunningServer

JS_DIR = Path(__file__).resolve().parent.parent / "js"
MiB = 1024 * 1024
SIZE = 24 * MiB
CHUNK = 5 * MiB
TUS = {"Tus-Resumable": "1.0.0"}
# Far longer than the server needs to read what reached it and store it (S3 included).
SETTLE = 1.0

# Each upload costs a few seconds more on S3: the S3 runs are the cut mid-part (which leaves
# a tail object), and the extensions whose S3 side differs (UploadPartCopy, parts of an
# unknown length). Plain chunked uploads on S3 are covered by test_tuspy_client.


@dataclass(frozen=True)
class Payload:
    path: Path
    sha256: str


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tus-js-client installed from tests/js/package.json when missing."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH; tus-js-client needs Node.js >= 18")
    if not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is on PATH but npm is not; cannot install tus-js-client"
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return node


@pytest.fixture(scope="session")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    data = os.urandom(SIZE)
    path = tmp_path_factory.mktemp("js-payload") / "random.bin"
    path.write_bytes(data)
    return Payload(path, hashlib.sha256(data).hexdigest())


def upload(node: str, endpoint: str, file: Path, chunk_size: int, **options: Any) -> dict[str, Any]:
    """Run upload.mjs once; returns its JSON report (the process has exited by then)."""
    done = subprocess.run(
        [node, str(JS_DIR / "upload.mjs"), endpoint, str(file), str(chunk_size), json.dumps(options)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"upload.mjs exited {done.returncode}: {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def head(url: str) -> httpx.Response:
    response = httpx.head(url, headers=TUS, timeout=10)
    assert response.status_code == 200, response.text
    return response


def downloaded_sha256(url: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        for block in response.iter_bytes():
            digest.update(block)
    return digest.hexdigest()


def stored_sha256(server: RunningServer, url: str) -> str:
    return hashlib.sha256(server.store.read(upload_id(url))).hexdigest()


def decode_metadata(header: str) -> dict[str, str]:
    pairs = (item.strip().split(" ") for item in header.split(","))
    return {pair[0]: base64.b64decode(pair[1]).decode() if len(pair) > 1 else "" for pair in pairs}


def settled_offset(url: str) -> int:
    """HEAD's offset once the server has surely read every byte that reached it.

    Not at once: a HEAD asks a PATCH still reading its body to let go, which would end it
    before it took the bytes waiting in the socket. Unfinished uploads' bytes are not
    readable on every store, so the store itself cannot be polled.
    """
    time.sleep(SETTLE)
    return int(head(url).headers["Upload-Offset"])


def test_uploads_24_mib_in_5_mib_chunks(node: str, server: RunningServer, payload: Payload) -> None:
    metadata = {"filename": "random.bin", "filetype": "application/octet-stream"}

    report = upload(node, server.endpoint, payload.path, CHUNK, metadata=metadata)

    assert report["stopped"] is False
    assert report["url"].startswith(server.endpoint)
    assert report["offsets"] == [5 * MiB, 10 * MiB, 15 * MiB, 20 * MiB, SIZE]
    info = head(report["url"])
    assert info.headers["Upload-Offset"] == str(SIZE)
    assert info.headers["Upload-Length"] == str(SIZE)
    assert decode_metadata(info.headers["Upload-Metadata"]) == metadata
    assert downloaded_sha256(report["url"]) == payload.sha256
    assert stored_sha256(server, report["url"]) == payload.sha256


def test_run_stopped_after_10_mib_is_resumed_by_a_second_run(
    node: str, server: RunningServer, payload: Payload
) -> None:
    first = upload(node, server.endpoint, payload.path, CHUNK, stopAfter=10 * MiB)
    assert first["stopped"] is True

    offset = int(head(first["url"]).headers["Upload-Offset"])
    assert 0 < offset <= SIZE
    assert offset == first["bytesAccepted"]

    second = upload(node, server.endpoint, payload.path, CHUNK, uploadUrl=first["url"])

    assert second["stopped"] is False
    assert second["url"] == first["url"]
    # The first chunk of the second run starts at the server's offset, so nothing was sent twice.
    assert second["offsets"][0] == offset + CHUNK
    assert downloaded_sha256(first["url"]) == payload.sha256
    assert stored_sha256(server, first["url"]) == payload.sha256


# Odd cuts inside the third chunk: the server must keep a partial chunk, not round to one. A few
# bytes can reach the server before the handler reads any of them; more than 64 KiB (uvicorn's
# read buffer) keep the handler busy reading when the connection drops.
@pytest.mark.parametrize(
    ("tus_store", "cut"),
    [
        pytest.param("file", 10 * MiB + 1_234, id="file-few-bytes"),
        pytest.param("file", 10 * MiB + 123_457, id="file-many-bytes"),
        pytest.param("s3", 10 * MiB + 123_457, id="s3-many-bytes"),
    ],
    indirect=["tus_store"],
)
def test_connection_cut_mid_patch_keeps_the_bytes_that_arrived(
    node: str, server: RunningServer, payload: Payload, tmp_path: Path, cut: int
) -> None:
    url_storage = tmp_path / "tus-url-storage.json"

    first = upload(node, server.endpoint, payload.path, CHUNK, cutAfter=cut, urlStorage=str(url_storage))
    assert first["stopped"] is True
    assert first["cutAt"] == cut

    stored = settled_offset(first["url"])
    assert stored == cut, f"the server kept {stored} of the {cut} bytes that arrived before the cut"

    # The second run finds the upload through tus-js-client's URL storage, as a real app would.
    second = upload(node, server.endpoint, payload.path, CHUNK, urlStorage=str(url_storage))

    assert second["resumed"] is True
    assert second["url"] == first["url"]
    assert second["offsets"][0] == cut + CHUNK
    assert downloaded_sha256(first["url"]) == payload.sha256
    assert stored_sha256(server, first["url"]) == payload.sha256


# A buffer for a deferred length: tus-js-client's fs.ReadStream source announces a full chunk
# for the short last chunk when the length is deferred, which no server can complete.
DEFERRED = {"uploadLengthDeferred": True, "input": "buffer"}


@pytest.mark.parametrize(
    ("tus_store", "options"),
    [
        pytest.param("file", {"input": "buffer"}, id="file-buffer-input"),
        pytest.param("file", {"uploadDataDuringCreation": True}, id="file-creation-with-upload"),
        pytest.param("file", DEFERRED, id="file-creation-defer-length"),
        pytest.param("s3", DEFERRED, id="s3-creation-defer-length"),
        pytest.param("file", {"parallelUploads": 3}, id="file-concatenation"),
        pytest.param("s3", {"parallelUploads": 3}, id="s3-concatenation"),
    ],
    indirect=["tus_store"],
)
def test_extension_used_by_tus_js_client(
    node: str, server: RunningServer, payload: Payload, options: dict[str, Any]
) -> None:
    report = upload(node, server.endpoint, payload.path, CHUNK, **options)

    assert report["stopped"] is False
    info = head(report["url"])
    assert info.headers["Upload-Offset"] == str(SIZE)
    assert info.headers["Upload-Length"] == str(SIZE)
    if "parallelUploads" in options:
        assert info.headers["Upload-Concat"].startswith("final;")
        assert len(info.headers["Upload-Concat"].removeprefix("final;").split()) == 3
    assert downloaded_sha256(report["url"]) == payload.sha256
    assert stored_sha256(server, report["url"]) == payload.sha256
