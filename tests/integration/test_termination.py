"""The termination extension: DELETE removes an upload and everything the store kept of it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import STORES, RunningServer, start_server, store_backend

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module", params=STORES)
def tus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("uploads")
    server = start_server(directory, backend=store_backend(request, request.param, directory))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def create(client: httpx.Client, tus: RunningServer, length: int, body: bytes = b"") -> str:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    url = response.headers["Location"]
    if body:
        patched = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=body)
        assert patched.status_code == 204
    return url


def test_options_lists_termination(client: httpx.Client, tus: RunningServer) -> None:
    assert "termination" in client.options(tus.endpoint).headers["Tus-Extension"].split(",")


@pytest.mark.parametrize("body", [b"", b"half", b"complete"], ids=["empty", "unfinished", "finished"])
def test_delete_removes_the_upload_and_all_it_stored(client: httpx.Client, tus: RunningServer, body: bytes) -> None:
    before = tus.store.names()
    url = create(client, tus, 8, body)
    assert tus.store.names() != before

    response = client.delete(url, headers=TUS)

    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.content == b""
    assert client.head(url, headers=TUS).status_code == 404
    assert client.get(url).status_code == 404
    resumed = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(len(body))}, content=b"x")
    assert resumed.status_code == 404
    assert tus.store.names() == before


def test_delete_leaves_other_uploads_alone(client: httpx.Client, tus: RunningServer) -> None:
    kept = create(client, tus, 3, b"xyz")
    with_kept = tus.store.names()
    doomed = create(client, tus, 3, b"abc")

    assert client.delete(doomed, headers=TUS).status_code == 204

    assert client.get(kept).content == b"xyz"
    assert tus.store.names() == with_kept


def test_delete_of_an_unknown_upload_is_404(client: httpx.Client, tus: RunningServer) -> None:
    assert client.delete(tus.endpoint + "a" * 32, headers=TUS).status_code == 404


def test_second_delete_is_404(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 3)
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.delete(url, headers=TUS).status_code == 404


def test_delete_of_a_final_upload_keeps_its_partials(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "2", "Upload-Concat": "partial"})
    partial = response.headers["Location"]
    assert client.patch(partial, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"ab").status_code == 204
    before = tus.store.names()
    final = client.post(tus.endpoint, headers={**TUS, "Upload-Concat": f"final;{partial}"}).headers["Location"]

    assert client.delete(final, headers=TUS).status_code == 204

    assert client.head(final, headers=TUS).status_code == 404
    assert client.get(partial).content == b"ab"
    assert tus.store.names() == before
