"""The tus 1.0 core protocol over HTTP: OPTIONS, HEAD, PATCH, versioning and errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import STORES, RunningServer, start_server, store_backend

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
EXTENSIONS = [
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
    "concatenation-unfinished",
]


@pytest.fixture(scope="module", params=STORES)
def tus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("uploads")
    server = start_server(directory, backend=store_backend(request, request.param, directory))
    yield server
    server.stop()


# Checks that answer before the store is reached (OPTIONS, versions, content types, routes)
# run on files only: on S3 they would test the same code again, each request slower.
files_only = pytest.mark.parametrize("tus", ["file"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def create(client: httpx.Client, tus: RunningServer, length: int) -> str:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def patch(
    client: httpx.Client, url: str, offset: int, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset), **(headers or {})}, content=body)


def stored(tus: RunningServer, url: str) -> bytes:
    """The bytes the store holds for a finished upload."""
    return tus.store.read(url.rsplit("/", 1)[-1])


def finish(client: httpx.Client, tus: RunningServer, url: str, offset: int, rest: bytes) -> bytes:
    """Send `rest` at `offset` (which must finish the upload); what the store then holds.

    An unfinished upload's bytes are not readable on every store: finishing it shows both
    that HEAD's offset was the truth and which bytes were kept before it.
    """
    response = patch(client, url, offset, rest)
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(offset + len(rest))
    return stored(tus, url)


def head_offset(client: httpx.Client, url: str) -> int:
    response = client.head(url, headers=TUS)
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])


# -- OPTIONS -----------------------------------------------------------------------


@files_only
def test_options_lists_version_extensions_and_algorithms(client: httpx.Client, tus: RunningServer) -> None:
    response = client.options(tus.endpoint)

    assert response.status_code in (200, 204)
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Tus-Extension"].split(",") == EXTENSIONS
    # Trailers are not implemented, so advertising them would make clients send them.
    assert "checksum-trailer" not in response.headers["Tus-Extension"]
    algorithms = response.headers["Tus-Checksum-Algorithm"].split(",")
    assert {"md5", "sha1", "sha256", "sha512"} <= set(algorithms)


@files_only
def test_options_has_no_max_size_without_the_flag(client: httpx.Client, tus: RunningServer) -> None:
    assert "Tus-Max-Size" not in client.options(tus.endpoint).headers


@files_only
@pytest.mark.parametrize("version", [None, "0.2.2", "garbage"])
def test_options_does_not_require_tus_resumable(client: httpx.Client, tus: RunningServer, version: str | None) -> None:
    headers = {} if version is None else {"Tus-Resumable": version}
    for url in (tus.endpoint, tus.endpoint + "0" * 32):
        response = client.options(url, headers=headers)
        assert response.status_code in (200, 204)
        assert response.headers["Tus-Version"] == "1.0.0"


# -- HEAD ---------------------------------------------------------------------------


def test_head_reports_offset_length_metadata_and_forbids_caching(client: httpx.Client, tus: RunningServer) -> None:
    metadata = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
    created = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "100", "Upload-Metadata": metadata})
    url = created.headers["Location"]
    assert patch(client, url, 0, b"x" * 30).status_code == 204

    response = client.head(url, headers=TUS)

    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "30"
    assert response.headers["Upload-Length"] == "100"
    assert "Upload-Defer-Length" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    pairs = sorted(response.headers["Upload-Metadata"].split(","))
    assert pairs == sorted(metadata.split(","))
    assert response.content == b""


def test_head_metadata_round_trips_unicode_and_empty_values(client: httpx.Client, tus: RunningServer) -> None:
    # "naïve 名前.txt" and a key with an empty value.
    metadata = "name bmHDr3ZlIOWQjeWJjS50eHQ=,empty"
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": metadata}).headers[
        "Location"
    ]

    header = client.head(url, headers=TUS).headers["Upload-Metadata"]

    assert sorted(header.split(",")) == sorted(metadata.split(","))


def test_head_without_metadata_sends_no_metadata_header(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 5)
    assert "Upload-Metadata" not in client.head(url, headers=TUS).headers


# -- PATCH --------------------------------------------------------------------------


def test_patch_appends_and_answers_the_new_offset(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 11)

    first = patch(client, url, 0, b"hello ")
    second = patch(client, url, 6, b"world")

    assert first.status_code == 204
    assert first.headers["Upload-Offset"] == "6"
    assert second.status_code == 204
    assert second.headers["Upload-Offset"] == "11"
    assert head_offset(client, url) == 11
    assert stored(tus, url) == b"hello world"


def test_patch_with_an_empty_body_changes_nothing(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 4)
    response = patch(client, url, 0, b"")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "0"
    assert finish(client, tus, url, 0, b"abcd") == b"abcd"


@files_only
@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain", "application/offset"])
def test_patch_with_another_content_type_is_415(
    client: httpx.Client, tus: RunningServer, content_type: str | None
) -> None:
    url = create(client, tus, 5)
    headers = {**TUS, "Upload-Offset": "0"}
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = client.patch(url, headers=headers, content=b"abcde")

    assert response.status_code == 415
    assert head_offset(client, url) == 0
    assert finish(client, tus, url, 0, b"fghij") == b"fghij"


@files_only
def test_patch_content_type_parameters_are_accepted(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 3)
    response = patch(client, url, 0, b"abc", {"Content-Type": "application/offset+octet-stream; charset=binary"})
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"


@pytest.mark.parametrize("sent_offset", [0, 3, 5, 9])
def test_patch_at_the_wrong_offset_is_409_and_stores_nothing(
    client: httpx.Client, tus: RunningServer, sent_offset: int
) -> None:
    url = create(client, tus, 10)
    assert patch(client, url, 0, b"1234").status_code == 204

    response = patch(client, url, sent_offset, b"zz")

    assert response.status_code == 409
    assert head_offset(client, url) == 4
    assert finish(client, tus, url, 4, b"567890") == b"1234567890"


# -- nothing past Upload-Length -------------------------------------------------------


def test_patch_longer_than_the_remaining_length_is_413(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 10)
    assert patch(client, url, 0, b"abcd").status_code == 204

    response = patch(client, url, 4, b"x" * 7)

    assert response.status_code == 413
    offset = head_offset(client, url)
    assert 4 <= offset <= 10
    assert finish(client, tus, url, offset, b"z" * (10 - offset)) == (b"abcd" + b"x" * 6)[:offset] + b"z" * (
        10 - offset
    )


def test_chunked_patch_never_stores_past_the_length(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 10)

    def body() -> Iterator[bytes]:
        for _ in range(6):
            yield b"y" * 7

    response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=body())

    assert response.status_code == 413
    offset = head_offset(client, url)
    assert offset <= 10
    assert finish(client, tus, url, offset, b"z" * (10 - offset)) == b"y" * offset + b"z" * (10 - offset)


def test_chunked_patch_within_the_length_is_stored(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 12)

    def body() -> Iterator[bytes]:
        yield b"abcd"
        yield b"efgh"
        yield b"ijkl"

    response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=body())

    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "12"
    assert stored(tus, url) == b"abcdefghijkl"


def test_patch_on_a_finished_upload_with_more_bytes_is_413(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 3)
    assert patch(client, url, 0, b"abc").status_code == 204

    response = patch(client, url, 3, b"d")

    assert response.status_code == 413
    assert stored(tus, url) == b"abc"


# -- Tus-Resumable ----------------------------------------------------------------------


@files_only
@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", "1.0.1"])
@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
def test_tus_methods_without_the_right_version_are_412(
    client: httpx.Client, tus: RunningServer, method: str, version: str | None
) -> None:
    url = create(client, tus, 6)
    assert patch(client, url, 0, b"abc").status_code == 204
    headers = {**OCTET, "Upload-Offset": "3", "Upload-Length": "6"}
    if version is not None:
        headers["Tus-Resumable"] = version
    target = tus.endpoint if method == "POST" else url
    before = tus.store.names()

    response = client.request(method, target, headers=headers, content=b"def" if method == "PATCH" else None)

    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert tus.store.names() == before
    assert finish(client, tus, url, 3, b"def") == b"abcdef"


@files_only
@pytest.mark.parametrize("version", [None, "0.2.2"])
def test_get_does_not_require_tus_resumable(client: httpx.Client, tus: RunningServer, version: str | None) -> None:
    url = create(client, tus, 3)
    assert patch(client, url, 0, b"abc").status_code == 204
    headers = {} if version is None else {"Tus-Resumable": version}

    response = client.get(url, headers=headers)

    assert response.status_code == 200
    assert response.content == b"abc"


def test_every_response_carries_tus_resumable(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 3)
    unknown = tus.endpoint + "f" * 32
    responses = [
        client.post(tus.endpoint, headers={**TUS, "Upload-Length": "3"}),  # 201
        client.options(tus.endpoint),  # 204
        client.head(url, headers=TUS),  # 200
        patch(client, url, 0, b"ab"),  # 204
        patch(client, url, 0, b"ab"),  # 409
        patch(client, url, 2, b"abc"),  # 413
        client.patch(url, headers={**TUS, "Upload-Offset": "2"}, content=b"c"),  # 415
        client.head(url),  # 412
        client.head(unknown, headers=TUS),  # 404
        client.get(url),  # 409
        client.put(url, headers=TUS),  # 405
        client.post(tus.endpoint, headers={**TUS, "Upload-Length": "-1"}),  # 400
        client.get(tus.origin + "/elsewhere"),  # 404 outside the base path
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [201, 204, 200, 204, 409, 413, 415, 412, 404, 409, 405, 400, 404]
    for response in responses:
        assert response.headers.get("Tus-Resumable") == "1.0.0", response.request


# -- X-HTTP-Method-Override ---------------------------------------------------------------


def test_post_overridden_to_patch_appends(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 4)

    response = client.post(
        url, headers={**TUS, **OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}, content=b"abcd"
    )

    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "4"
    assert stored(tus, url) == b"abcd"


def test_post_overridden_to_delete_terminates(client: httpx.Client, tus: RunningServer) -> None:
    before = tus.store.names()
    url = create(client, tus, 4)

    response = client.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})

    assert response.status_code == 204
    assert client.head(url, headers=TUS).status_code == 404
    assert tus.store.names() == before


def test_post_overridden_to_head_reports_the_offset(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 4)
    assert patch(client, url, 0, b"ab").status_code == 204

    response = client.post(url, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})

    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "2"
    assert response.headers["Upload-Length"] == "4"


@files_only
def test_method_override_applies_only_to_post(client: httpx.Client, tus: RunningServer) -> None:
    # A GET (which a page can make cross-site) must never turn into a DELETE.
    url = create(client, tus, 2)
    assert patch(client, url, 0, b"ab").status_code == 204

    response = client.get(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})

    assert response.status_code == 200
    assert stored(tus, url) == b"ab"


# -- unknown uploads and wrong methods ------------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
def test_unknown_upload_is_404(client: httpx.Client, tus: RunningServer, method: str) -> None:
    response = client.request(
        method,
        tus.endpoint + "0123456789abcdef0123456789abcdef",
        headers={**TUS, **OCTET, "Upload-Offset": "0"},
        content=b"x" if method == "PATCH" else None,
    )
    assert response.status_code == 404
    assert response.headers["Tus-Resumable"] == "1.0.0"


@files_only
@pytest.mark.parametrize(
    ("method", "on_upload"),
    [("GET", False), ("DELETE", False), ("PATCH", False), ("PUT", False), ("PUT", True), ("POST", True)],
)
def test_wrong_method_is_405(client: httpx.Client, tus: RunningServer, method: str, on_upload: bool) -> None:
    url = create(client, tus, 2) if on_upload else tus.endpoint

    response = client.request(method, url, headers={**TUS, **OCTET, "Upload-Offset": "0", "Upload-Length": "2"})

    assert response.status_code == 405
    assert "Allow" in response.headers
    if on_upload:
        assert head_offset(client, url) == 0


@files_only
def test_paths_outside_the_base_path_are_404(client: httpx.Client, tus: RunningServer) -> None:
    for path in ("/", "/other", "/files/abc/def", "/filesx/"):
        response = client.post(tus.origin + path, headers={**TUS, "Upload-Length": "1"})
        assert response.status_code == 404, path
