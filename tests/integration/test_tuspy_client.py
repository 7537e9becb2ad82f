"""tuspy (the `tusclient` package) against a real `tusd-py serve`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from tusclient.client import TusClient
from tusclient.exceptions import TusUploadFailed
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader.uploader import Uploader

if TYPE_CHECKING:
    from tests.conftest import RunningServer

MiB = 1024 * 1024
SIZE = 24 * MiB
CHUNK = 4 * MiB
TUS = {"Tus-Resumable": "1.0.0"}


@dataclass(frozen=True)
class Payload:
    path: Path
    sha256: str


@pytest.fixture(scope="session")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Payload:
    data = os.urandom(SIZE)
    path = tmp_path_factory.mktemp("tuspy-payload") / "random.bin"
    path.write_bytes(data)
    return Payload(path, hashlib.sha256(data).hexdigest())


def offset_of(url: str) -> int:
    response = httpx.head(url, headers=TUS, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.headers["Upload-Offset"])


def downloaded_sha256(url: str) -> str:
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        for block in response.iter_bytes():
            digest.update(block)
    return digest.hexdigest()


def stored_sha256(server: RunningServer, url: str) -> str:
    upload_id = url.rstrip("/").rsplit("/", 1)[-1]
    return hashlib.sha256(server.store.read(upload_id)).hexdigest()


def assert_complete(server: RunningServer, url: str, payload: Payload) -> None:
    assert offset_of(url) == SIZE
    assert downloaded_sha256(url) == payload.sha256
    assert stored_sha256(server, url) == payload.sha256


def test_uploads_24_mib_in_4_mib_chunks_with_metadata(server: RunningServer, payload: Payload) -> None:
    metadata = {"filename": "rändom bytes.bin", "filetype": "application/octet-stream", "note": "a, b ✓"}
    uploader = TusClient(server.endpoint).uploader(file_path=str(payload.path), chunk_size=CHUNK, metadata=metadata)

    uploader.upload()

    assert uploader.url is not None
    assert uploader.offset == SIZE
    response = httpx.head(uploader.url, headers=TUS, timeout=10)
    pairs = (item.strip().split(" ") for item in response.headers["Upload-Metadata"].split(","))
    assert {key: base64.b64decode(value).decode() for key, value in pairs} == metadata
    assert_complete(server, uploader.url, payload)


# On S3 too: a resume across the first part's end (its tail becomes part of a part). The
# other uploads here send the same chunks again, at seconds more each on S3.
@pytest.mark.all_stores
def test_interrupted_upload_is_finished_by_a_new_uploader_given_the_url(
    server: RunningServer, payload: Payload
) -> None:
    first = TusClient(server.endpoint).uploader(file_path=str(payload.path), chunk_size=CHUNK)
    for _ in range(3):
        first.upload_chunk()
    url = first.url
    assert url is not None
    del first

    assert offset_of(url) == 3 * CHUNK
    # A fresh client, as after a restart: the uploader asks the server for the offset (HEAD).
    second = TusClient(server.endpoint).uploader(file_path=str(payload.path), chunk_size=CHUNK, url=url)
    assert second.offset == 3 * CHUNK
    second.upload()

    assert second.url == url
    assert_complete(server, url, payload)


def test_interrupted_upload_is_found_again_through_url_storage(
    server: RunningServer, payload: Payload, tmp_path: Path
) -> None:
    storage_path = str(tmp_path / "tuspy-urls.json")

    def uploader() -> Uploader:
        client = TusClient(server.endpoint)
        return client.uploader(
            file_path=str(payload.path), chunk_size=CHUNK, store_url=True, url_storage=FileStorage(storage_path)
        )

    first = uploader()
    first.upload(stop_at=10 * MiB)
    url = first.url
    assert url is not None
    # tuspy shortens the chunk that crosses stop_at, so the server holds exactly stop_at bytes.
    assert offset_of(url) == 10 * MiB
    del first

    second = uploader()
    assert second.url == url
    assert second.offset == 10 * MiB
    second.upload()

    assert_complete(server, url, payload)


def corrupted(algorithm: Callable[..., Any]) -> Callable[[bytes], Any]:
    return lambda data: algorithm(data + b"\0")


class Sha256Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


class Md5Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("md5", hashlib.md5)


class WrongSha1Uploader(Uploader):
    CHECKSUM_ALGORITHM_PAIR = ("sha1", corrupted(hashlib.sha1))


def test_upload_with_checksums_sends_and_passes_sha1(server: RunningServer, payload: Payload) -> None:
    uploader = TusClient(server.endpoint).uploader(file_path=str(payload.path), chunk_size=CHUNK, upload_checksum=True)

    uploader.upload()

    assert uploader.request is not None
    sent = uploader.request._request_headers["upload-checksum"]
    with payload.path.open("rb") as file:
        file.seek(5 * CHUNK)
        last_chunk = file.read()
    assert sent == "sha1 " + base64.b64encode(hashlib.sha1(last_chunk).digest()).decode()
    assert uploader.url is not None
    assert_complete(server, uploader.url, payload)


def test_upload_with_md5_then_sha256_checksums(server: RunningServer, payload: Payload) -> None:
    client = TusClient(server.endpoint)
    md5 = Md5Uploader(file_path=str(payload.path), client=client, chunk_size=CHUNK, upload_checksum=True)
    md5.upload(stop_at=3 * CHUNK)
    assert md5.url is not None
    assert md5.request is not None
    assert md5.request._request_headers["upload-checksum"].startswith("md5 ")
    sha256 = Sha256Uploader(
        file_path=str(payload.path), client=client, url=md5.url, chunk_size=CHUNK, upload_checksum=True
    )

    sha256.upload()

    assert sha256.request is not None
    assert sha256.request._request_headers["upload-checksum"].startswith("sha256 ")
    assert_complete(server, md5.url, payload)


# On S3 too: a checked body is staged before it may be kept, and a refused one never is.
@pytest.mark.all_stores
def test_chunk_with_a_wrong_checksum_is_refused_and_not_kept(server: RunningServer, payload: Payload) -> None:
    client = TusClient(server.endpoint)
    good = client.uploader(file_path=str(payload.path), chunk_size=CHUNK, upload_checksum=True)
    good.upload_chunk()
    assert good.url is not None
    bad = WrongSha1Uploader(
        file_path=str(payload.path), client=client, url=good.url, chunk_size=CHUNK, upload_checksum=True
    )

    with pytest.raises(TusUploadFailed) as refused:
        bad.upload_chunk()

    assert refused.value.status_code == 460
    assert offset_of(good.url) == CHUNK
    # The same upload finishes once the checksums are right again.
    good.upload()
    assert_complete(server, good.url, payload)


def test_async_uploader_uploads_in_chunks(server: RunningServer, payload: Payload) -> None:
    uploader = TusClient(server.endpoint).async_uploader(file_path=str(payload.path), chunk_size=CHUNK)

    asyncio.run(asyncio.wait_for(uploader.upload(), timeout=60))

    assert uploader.url is not None
    assert uploader.offset == SIZE
    assert_complete(server, uploader.url, payload)
