"""The expiration extension: Upload-Expires, 410 for expired uploads, and the sweep."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from conftest import STORES, RunningServer, start_server, store_backend

from tusd_py.expiry import ExpirySweeper
from tusd_py.locks import MemoryLocker
from tusd_py.stores import FileStore, NewUpload

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
HOUR = 3600.0


@pytest.fixture(scope="module", params=STORES)
def tus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("uploads")
    backend = store_backend(request, request.param, directory)
    server = start_server(directory, "--expire-after", "1h", backend=backend)
    yield server
    server.stop()


# OPTIONS answers before any store is asked. The others make an upload look idle by setting
# its data file's mtime back, and S3 objects' times cannot be set: on S3, expiry is covered by
# Upload-Expires on live uploads and by the running server's sweep below.
files_only = pytest.mark.parametrize("tus", ["file"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def create(client: httpx.Client, server: RunningServer, length: int) -> httpx.Response:
    response = client.post(server.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    return response


def patch(client: httpx.Client, url: str, offset: int, body: bytes) -> httpx.Response:
    return client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset)}, content=body)


def data_file(server: RunningServer, url: str) -> Path:
    """The FileStore's file of an upload: the tests that age it run on files only."""
    return server.upload_dir / url.rsplit("/", 1)[-1]


def age(path: Path, seconds: float) -> None:
    """Make the upload look idle for `seconds`: its data file's mtime is its last activity."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def expires_in(response: httpx.Response) -> float:
    """Seconds from now until the response's Upload-Expires."""
    return parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp() - time.time()


# -- Upload-Expires ------------------------------------------------------------------------


@files_only
def test_options_lists_expiration(client: httpx.Client, tus: RunningServer) -> None:
    assert "expiration" in client.options(tus.endpoint).headers["Tus-Extension"].split(",")


def test_unfinished_upload_responses_carry_upload_expires(client: httpx.Client, tus: RunningServer) -> None:
    created = create(client, tus, 10)
    url = created.headers["Location"]
    patched = patch(client, url, 0, b"abc")
    head = client.head(url, headers=TUS)

    for response in (created, patched, head):
        assert response.headers["Upload-Expires"].endswith(" GMT")
        # An HTTP date about an hour ahead (it has one-second resolution).
        assert HOUR - 5 < expires_in(response) <= HOUR + 1


@files_only
def test_patch_pushes_the_expiry_back(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 10).headers["Location"]
    age(data_file(tus, url), 1800)
    assert expires_in(client.head(url, headers=TUS)) < HOUR - 1700

    assert expires_in(patch(client, url, 0, b"abc")) > HOUR - 5


def test_finished_upload_has_no_upload_expires(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 3).headers["Location"]

    finishing = patch(client, url, 0, b"abc")
    head = client.head(url, headers=TUS)

    assert finishing.status_code == 204
    assert "Upload-Expires" not in finishing.headers
    assert "Upload-Expires" not in head.headers


# -- 410 ------------------------------------------------------------------------------------


@files_only
def test_expired_unfinished_upload_is_410(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 10).headers["Location"]
    assert patch(client, url, 0, b"abc").status_code == 204
    age(data_file(tus, url), 2 * HOUR)

    head = client.head(url, headers=TUS)
    resumed = patch(client, url, 3, b"def")

    assert head.status_code == 410
    assert resumed.status_code == 410
    assert head.headers["Tus-Resumable"] == "1.0.0"
    assert data_file(tus, url).read_bytes() == b"abc"


@files_only
def test_upload_just_inside_its_lifetime_is_live(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 10).headers["Location"]
    age(data_file(tus, url), HOUR - 60)

    assert client.head(url, headers=TUS).status_code == 200
    assert patch(client, url, 0, b"abc").status_code == 204


@files_only
def test_finished_upload_never_expires(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 3).headers["Location"]
    assert patch(client, url, 0, b"abc").status_code == 204
    age(data_file(tus, url), 100 * HOUR)

    assert client.head(url, headers=TUS).status_code == 200
    assert client.get(url).content == b"abc"


# -- the sweep ---------------------------------------------------------------------------------


def test_sweep_removes_only_expired_unfinished_uploads(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    sweeper = ExpirySweeper(store, MemoryLocker(timeout=1), expire_after=HOUR)

    async def scenario() -> tuple[list[str], list[str]]:
        await store.create(NewUpload(id="stale", size=10))
        await store.create(NewUpload(id="fresh", size=10))
        await store.create(NewUpload(id="deferred", size=None))
        await store.create(NewUpload(id="finished", size=0))
        for name in ("stale", "deferred", "finished"):
            age(tmp_path / name, 2 * HOUR)
        now = await sweeper.sweep(now=time.time())
        later = await sweeper.sweep(now=time.time() + 2 * HOUR)
        return now, later

    now, later = asyncio.run(scenario())

    assert sorted(now) == ["deferred", "stale"]
    assert later == ["fresh"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finished", "finished.info"]


@pytest.mark.all_stores
def test_running_server_sweeps_expired_uploads(client: httpx.Client, server_factory: object) -> None:
    server: RunningServer = server_factory("--expire-after", "2s")  # type: ignore[operator]
    finished = create(client, server, 3).headers["Location"]
    assert patch(client, finished, 0, b"abc").status_code == 204
    kept = server.store.names()
    unfinished = create(client, server, 10).headers["Location"]
    assert patch(client, unfinished, 0, b"abc").status_code == 204
    assert server.store.names() != kept

    # Expires 2 s after the last PATCH; the sweep runs every second.
    deadline = time.monotonic() + 8
    while server.store.names() != kept and time.monotonic() < deadline:
        time.sleep(0.2)

    assert server.store.names() == kept
    assert client.head(unfinished, headers=TUS).status_code in (404, 410)
    assert client.get(finished).content == b"abc"
    assert client.head(finished, headers=TUS).status_code == 200
    assert server.store.read(finished.rsplit("/", 1)[-1]) == b"abc"
