"""The creation, creation-with-upload and creation-defer-length extensions, and --max-size."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import RunningServer, start_server

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
MAX_SIZE = 1000


@pytest.fixture(scope="module")
def tus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("uploads"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("limited"), "--max-size", str(MAX_SIZE))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def patch(
    client: httpx.Client, url: str, offset: int, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset), **(headers or {})}, content=body)


def data_file(server: RunningServer, url: str) -> Path:
    return server.upload_dir / url.rsplit("/", 1)[-1]


def create_deferred(client: httpx.Client, server: RunningServer) -> str:
    response = client.post(server.endpoint, headers={**TUS, "Upload-Defer-Length": "1"})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


# -- creation -------------------------------------------------------------------------


def test_post_creates_an_upload_at_an_absolute_location(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "42"})

    assert response.status_code == 201
    location = urlsplit(response.headers["Location"])
    assert (location.scheme, location.netloc) == ("http", f"127.0.0.1:{tus.port}")
    # 32 hex digits: 128 bits of randomness, so the URL works as a capability.
    assert re.fullmatch(r"/files/[0-9a-f]{32}", location.path)
    head = client.head(response.headers["Location"], headers=TUS)
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == "42"
    assert data_file(tus, response.headers["Location"]).stat().st_size == 0


def test_each_creation_gets_a_new_id(client: httpx.Client, tus: RunningServer) -> None:
    locations = {client.post(tus.endpoint, headers={**TUS, "Upload-Length": "1"}).headers["Location"] for _ in range(5)}
    assert len(locations) == 5


def test_post_without_trailing_slash_creates_too(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(tus.endpoint.rstrip("/"), headers={**TUS, "Upload-Length": "1"})
    assert response.status_code == 201
    assert client.head(response.headers["Location"], headers=TUS).status_code == 200


def test_zero_length_upload_is_finished_at_once(client: httpx.Client, tus: RunningServer) -> None:
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "0"}).headers["Location"]

    head = client.head(url, headers=TUS)
    download = client.get(url)

    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", "0")
    assert download.status_code == 200
    assert download.content == b""


# -- creation-with-upload --------------------------------------------------------------


def test_post_with_a_body_stores_it_and_answers_the_offset(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(tus.endpoint, headers={**TUS, **OCTET, "Upload-Length": "10"}, content=b"hello")

    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "5"
    url = response.headers["Location"]
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "5"
    assert patch(client, url, 5, b"world").status_code == 204
    assert client.get(url).content == b"helloworld"


def test_post_with_the_whole_body_finishes_the_upload(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(tus.endpoint, headers={**TUS, **OCTET, "Upload-Length": "3"}, content=b"abc")

    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "3"
    assert client.get(response.headers["Location"]).content == b"abc"


def test_post_body_of_another_content_type_is_not_stored(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(
        tus.endpoint, headers={**TUS, "Content-Type": "text/plain", "Upload-Length": "3"}, content=b"abc"
    )

    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "0"
    assert data_file(tus, response.headers["Location"]).stat().st_size == 0


def test_post_body_longer_than_the_length_is_413_and_not_stored_past_it(
    client: httpx.Client, tus: RunningServer
) -> None:
    before = {p.name for p in tus.upload_dir.iterdir()}

    response = client.post(tus.endpoint, headers={**TUS, **OCTET, "Upload-Length": "4"}, content=b"abcdefgh")

    assert response.status_code == 413
    for path in tus.upload_dir.iterdir():
        if path.name not in before and not path.name.endswith(".info"):
            assert path.stat().st_size <= 4


# -- creation-defer-length -------------------------------------------------------------


def test_deferred_upload_reports_defer_length(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)

    head = client.head(url, headers=TUS)

    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    assert head.headers["Upload-Offset"] == "0"


def test_deferred_length_is_set_by_a_later_patch(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)
    assert patch(client, url, 0, b"abc").status_code == 204
    assert client.head(url, headers=TUS).headers["Upload-Defer-Length"] == "1"

    response = patch(client, url, 3, b"def", {"Upload-Length": "6"})

    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "6"
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Length"] == "6"
    assert "Upload-Defer-Length" not in head.headers
    assert client.get(url).content == b"abcdef"


def test_deferred_length_can_be_declared_with_an_empty_patch(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)

    response = patch(client, url, 0, b"", {"Upload-Length": "5"})

    assert response.status_code == 204
    assert client.head(url, headers=TUS).headers["Upload-Length"] == "5"
    assert patch(client, url, 0, b"abcdef").status_code == 413
    assert data_file(tus, url).stat().st_size <= 5


def test_length_cannot_change_once_declared(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)
    assert patch(client, url, 0, b"ab", {"Upload-Length": "10"}).status_code == 204

    changed = patch(client, url, 2, b"cd", {"Upload-Length": "20"})
    repeated = patch(client, url, 2, b"cd", {"Upload-Length": "10"})

    assert changed.status_code == 400
    assert repeated.status_code == 204
    assert client.head(url, headers=TUS).headers["Upload-Length"] == "10"
    assert data_file(tus, url).read_bytes() == b"abcd"


def test_length_of_a_non_deferred_upload_cannot_change(client: httpx.Client, tus: RunningServer) -> None:
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "10"}).headers["Location"]

    response = patch(client, url, 0, b"ab", {"Upload-Length": "11"})

    assert response.status_code == 400
    assert client.head(url, headers=TUS).headers["Upload-Length"] == "10"
    assert data_file(tus, url).stat().st_size == 0


def test_declared_length_below_the_stored_offset_is_400(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)
    assert patch(client, url, 0, b"abcdef").status_code == 204

    response = patch(client, url, 6, b"", {"Upload-Length": "4"})

    assert response.status_code == 400
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert head.headers["Upload-Offset"] == "6"


def test_patch_refused_for_its_offset_does_not_declare_the_length(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)

    response = patch(client, url, 5, b"abcde", {"Upload-Length": "10"})

    assert response.status_code == 409
    head = client.head(url, headers=TUS)
    assert head.headers.get("Upload-Defer-Length") == "1"
    assert "Upload-Length" not in head.headers


# -- --max-size ---------------------------------------------------------------------------


def test_options_reports_the_max_size(client: httpx.Client, limited: RunningServer) -> None:
    assert client.options(limited.endpoint).headers["Tus-Max-Size"] == str(MAX_SIZE)


def test_creation_above_the_max_size_is_413(client: httpx.Client, limited: RunningServer) -> None:
    before = sorted(p.name for p in limited.upload_dir.iterdir())

    response = client.post(limited.endpoint, headers={**TUS, "Upload-Length": str(MAX_SIZE + 1)})

    assert response.status_code == 413
    assert sorted(p.name for p in limited.upload_dir.iterdir()) == before


def test_creation_at_the_max_size_is_allowed(client: httpx.Client, limited: RunningServer) -> None:
    response = client.post(
        limited.endpoint, headers={**TUS, **OCTET, "Upload-Length": str(MAX_SIZE)}, content=b"z" * MAX_SIZE
    )
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == str(MAX_SIZE)


def test_deferred_patch_passing_the_max_size_is_413(client: httpx.Client, limited: RunningServer) -> None:
    url = create_deferred(client, limited)
    assert patch(client, url, 0, b"a" * 600).status_code == 204

    response = patch(client, url, 600, b"b" * 600)

    assert response.status_code == 413
    assert data_file(limited, url).stat().st_size <= MAX_SIZE


def test_deferred_chunked_patch_stops_at_the_max_size(client: httpx.Client, limited: RunningServer) -> None:
    url = create_deferred(client, limited)

    def body() -> Iterator[bytes]:
        for _ in range(15):
            yield b"c" * 100

    response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=body())

    assert response.status_code == 413
    assert data_file(limited, url).stat().st_size <= MAX_SIZE


def test_declaring_a_length_above_the_max_size_is_413(client: httpx.Client, limited: RunningServer) -> None:
    url = create_deferred(client, limited)

    response = patch(client, url, 0, b"", {"Upload-Length": str(MAX_SIZE + 1)})

    assert response.status_code == 413
    assert client.head(url, headers=TUS).headers["Upload-Defer-Length"] == "1"
