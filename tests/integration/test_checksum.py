"""The checksum extension: verified bodies are kept, mismatched ones (460) are discarded."""

from __future__ import annotations

import base64
import hashlib
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


# Headers refused before any byte reaches the store: on S3 they would test the same code again.
files_only = pytest.mark.parametrize("tus", ["file"], indirect=True, scope="module")
ALGORITHMS = ["md5", "sha1", "sha256", "sha512"]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def checksum(algorithm: str, body: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, body).digest()).decode()}"


def create(client: httpx.Client, tus: RunningServer, length: int) -> str:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    return response.headers["Location"]


def patch(
    client: httpx.Client, url: str, offset: int, body: bytes | Iterator[bytes], header: str | None
) -> httpx.Response:
    headers = {**TUS, **OCTET, "Upload-Offset": str(offset)}
    if header is not None:
        headers["Upload-Checksum"] = header
    return client.patch(url, headers=headers, content=body)


def finish(client: httpx.Client, tus: RunningServer, url: str, offset: int, rest: bytes) -> bytes:
    """Send `rest` at `offset` to finish the upload; what the store holds then.

    An unfinished upload's bytes are not readable on every store: finishing it shows both
    that HEAD's offset was the truth and which bytes were kept before it.
    """
    response = patch(client, url, offset, rest, None)
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(offset + len(rest))
    return tus.store.read(url.rsplit("/", 1)[-1])


def offset(client: httpx.Client, url: str) -> int:
    return int(client.head(url, headers=TUS).headers["Upload-Offset"])


@files_only
def test_options_lists_the_algorithms(client: httpx.Client, tus: RunningServer) -> None:
    response = client.options(tus.endpoint)
    assert "checksum" in response.headers["Tus-Extension"].split(",")
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"md5", "sha1", "sha256", "sha512"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_matching_checksum_is_accepted(client: httpx.Client, tus: RunningServer, algorithm: str) -> None:
    url = create(client, tus, 19)
    body = b"the quick brown fox"

    response = patch(client, url, 0, body, checksum(algorithm, body))

    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == str(len(body))
    assert tus.store.read(url.rsplit("/", 1)[-1]) == body


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mismatching_checksum_is_460_and_discards_the_body(
    client: httpx.Client, tus: RunningServer, algorithm: str
) -> None:
    url = create(client, tus, 20)
    assert patch(client, url, 0, b"kept", checksum(algorithm, b"kept")).status_code == 204

    response = patch(client, url, 4, b"corrupted", checksum(algorithm, b"intended!"))

    assert response.status_code == 460
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert offset(client, url) == 4
    assert finish(client, tus, url, 4, b"+sixteen bytes++") == b"kept+sixteen bytes++"


def test_mismatch_of_a_chunked_body_keeps_nothing_of_it(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 30)

    def body() -> Iterator[bytes]:
        yield b"first part, "
        yield b"second part"

    response = patch(client, url, 0, body(), checksum("sha1", b"something else"))

    assert response.status_code == 460
    assert offset(client, url) == 0
    assert finish(client, tus, url, 0, b"t" * 30) == b"t" * 30


def test_upload_resumes_after_a_mismatch(client: httpx.Client, tus: RunningServer) -> None:
    url = create(client, tus, 5)
    assert patch(client, url, 0, b"hellx", checksum("md5", b"hello")).status_code == 460

    response = patch(client, url, 0, b"hello", checksum("md5", b"hello"))

    assert response.status_code == 204
    assert client.get(url).content == b"hello"


def test_creation_with_upload_checks_the_checksum(client: httpx.Client, tus: RunningServer) -> None:
    good = client.post(
        tus.endpoint,
        headers={**TUS, **OCTET, "Upload-Length": "3", "Upload-Checksum": checksum("sha256", b"abc")},
        content=b"abc",
    )
    bad = client.post(
        tus.endpoint,
        headers={**TUS, **OCTET, "Upload-Length": "3", "Upload-Checksum": checksum("sha256", b"abd")},
        content=b"abc",
    )

    assert good.status_code == 201
    assert good.headers["Upload-Offset"] == "3"
    assert bad.status_code == 460


@files_only
@pytest.mark.parametrize("header", ["crc32 AAAAAA==", "sha3-256 " + base64.b64encode(bytes(32)).decode(), "blake2b x"])
def test_unknown_algorithm_is_400(client: httpx.Client, tus: RunningServer, header: str) -> None:
    url = create(client, tus, 5)

    response = patch(client, url, 0, b"hello", header)

    assert response.status_code == 400
    assert offset(client, url) == 0


@files_only
@pytest.mark.parametrize(
    "header",
    [
        "",
        "md5",
        "md5 not base64!",
        "md5 " + base64.b64encode(bytes(15)).decode(),  # too short for md5
        "sha1 " + base64.b64encode(bytes(32)).decode(),  # a sha256-sized digest
        "md5  " + base64.b64encode(hashlib.md5(b"hello").digest()).decode(),
        "md5 " + base64.b64encode(hashlib.md5(b"hello").digest()).decode() + " extra",
        "md5:" + base64.b64encode(hashlib.md5(b"hello").digest()).decode(),
    ],
)
def test_malformed_checksum_header_is_400(client: httpx.Client, tus: RunningServer, header: str) -> None:
    url = create(client, tus, 5)

    response = patch(client, url, 0, b"hello", header)

    assert response.status_code == 400
    assert offset(client, url) == 0
    assert finish(client, tus, url, 0, b"hello") == b"hello"
