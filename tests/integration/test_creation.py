"""The creation, creation-with-upload and creation-defer-length extensions, and --max-size."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from conftest import STORES, RunningServer, start_server, store_backend

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
MAX_SIZE = 1000


@pytest.fixture(scope="module", params=STORES)
def tus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("uploads")
    server = start_server(directory, backend=store_backend(request, request.param, directory))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=STORES)
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("limited")
    backend = store_backend(request, request.param, directory)
    server = start_server(directory, "--max-size", str(MAX_SIZE), backend=backend)
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


def finish(
    client: httpx.Client, server: RunningServer, url: str, offset: int, rest: bytes, *, declare: bool = False
) -> bytes:
    """Send `rest` at `offset` to finish the upload (declaring its length if `declare`); what the store holds then.

    An unfinished upload's bytes are not readable on every store: finishing it shows both
    that HEAD's offset was the truth and which bytes were kept before it.
    """
    length = {"Upload-Length": str(offset + len(rest))} if declare else {}
    response = patch(client, url, offset, rest, length)
    assert response.status_code == 204, response.text
    assert response.headers["Upload-Offset"] == str(offset + len(rest))
    return server.store.read(url.rsplit("/", 1)[-1])


def head_offset(client: httpx.Client, url: str) -> int:
    response = client.head(url, headers=TUS)
    assert response.status_code == 200
    return int(response.headers["Upload-Offset"])


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
    assert finish(client, tus, response.headers["Location"], 0, b"q" * 42) == b"q" * 42


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
    assert head_offset(client, response.headers["Location"]) == 0
    assert finish(client, tus, response.headers["Location"], 0, b"xyz") == b"xyz"


def test_post_body_longer_than_the_length_is_413_and_not_stored_past_it(
    client: httpx.Client, tus: RunningServer
) -> None:
    before = tus.store.names()

    response = client.post(tus.endpoint, headers={**TUS, **OCTET, "Upload-Length": "4"}, content=b"abcdefgh")

    assert response.status_code == 413
    # Whether the upload itself is created is the server's choice; its bytes never pass the length.
    if "Location" not in response.headers:
        assert tus.store.names() == before
        return
    offset = head_offset(client, response.headers["Location"])
    assert offset <= 4
    assert finish(client, tus, response.headers["Location"], offset, b"z" * (4 - offset)) == b"abcd"[:offset] + b"z" * (
        4 - offset
    )


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
    offset = head_offset(client, url)
    assert offset <= 5
    assert finish(client, tus, url, offset, b"z" * (5 - offset)) == b"abcde"[:offset] + b"z" * (5 - offset)


def test_length_cannot_change_once_declared(client: httpx.Client, tus: RunningServer) -> None:
    url = create_deferred(client, tus)
    assert patch(client, url, 0, b"ab", {"Upload-Length": "10"}).status_code == 204

    changed = patch(client, url, 2, b"cd", {"Upload-Length": "20"})
    repeated = patch(client, url, 2, b"cd", {"Upload-Length": "10"})

    assert changed.status_code == 400
    assert repeated.status_code == 204
    assert client.head(url, headers=TUS).headers["Upload-Length"] == "10"
    assert finish(client, tus, url, 4, b"efghij") == b"abcdefghij"


def test_length_of_a_non_deferred_upload_cannot_change(client: httpx.Client, tus: RunningServer) -> None:
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "10"}).headers["Location"]

    response = patch(client, url, 0, b"ab", {"Upload-Length": "11"})

    assert response.status_code == 400
    assert client.head(url, headers=TUS).headers["Upload-Length"] == "10"
    assert head_offset(client, url) == 0
    assert finish(client, tus, url, 0, b"abcdefghij") == b"abcdefghij"


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
    before = limited.store.names()

    response = client.post(limited.endpoint, headers={**TUS, "Upload-Length": str(MAX_SIZE + 1)})

    assert response.status_code == 413
    assert limited.store.names() == before


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
    offset = head_offset(client, url)
    assert 600 <= offset <= MAX_SIZE
    rest = b"z" * (MAX_SIZE - offset)
    assert finish(client, limited, url, offset, rest, declare=True) == (b"a" * 600 + b"b" * 600)[:offset] + rest


def test_deferred_chunked_patch_stops_at_the_max_size(client: httpx.Client, limited: RunningServer) -> None:
    url = create_deferred(client, limited)

    def body() -> Iterator[bytes]:
        for _ in range(15):
            yield b"c" * 100

    response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=body())

    assert response.status_code == 413
    offset = head_offset(client, url)
    assert offset <= MAX_SIZE
    rest = b"z" * (MAX_SIZE - offset)
    assert finish(client, limited, url, offset, rest, declare=True) == b"c" * offset + rest


def test_declaring_a_length_above_the_max_size_is_413(client: httpx.Client, limited: RunningServer) -> None:
    url = create_deferred(client, limited)

    response = patch(client, url, 0, b"", {"Upload-Length": str(MAX_SIZE + 1)})

    assert response.status_code == 413
    assert client.head(url, headers=TUS).headers["Upload-Defer-Length"] == "1"


# -- a large declared length -------------------------------------------------------------------

MiB = 1024 * 1024
TiB = 1024 * 1024 * MiB


class PeakMemory:
    """The highest resident size of a process, sampled in a thread while the body runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = self.process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    @property
    def growth(self) -> int:
        return self.peak - self.start


@pytest.mark.all_stores
def test_a_large_declared_length_does_not_make_the_server_hold_the_body(
    client: httpx.Client, server_factory: object
) -> None:
    server: RunningServer = server_factory()  # type: ignore[operator]
    # S3's largest object: a store on S3 must take it, in bounded memory like any other.
    created = client.post(server.endpoint, headers={**TUS, "Upload-Length": str(5 * TiB)})
    assert created.status_code == 201
    body_size = 192 * MiB

    def body() -> Iterator[bytes]:
        block = b"m" * MiB
        for _ in range(body_size // MiB):
            yield block

    with PeakMemory(server.process.pid) as memory:
        response = client.patch(
            created.headers["Location"],
            headers={**TUS, **OCTET, "Upload-Offset": "0"},
            content=body(),
            timeout=120,
        )

    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == str(body_size)
    assert memory.growth < 96 * MiB, f"the server grew by {memory.growth // MiB} MiB for a {body_size // MiB} MiB body"


@pytest.mark.all_stores
def test_uploads_longer_than_the_store_can_hold_are_refused_at_creation(
    client: httpx.Client, server_factory: object, tus_store: str
) -> None:
    server: RunningServer = server_factory()  # type: ignore[operator]
    too_long = client.post(server.endpoint, headers={**TUS, "Upload-Length": str(5 * TiB + 1)})
    advertised = client.options(server.endpoint).headers.get("Tus-Max-Size")
    if tus_store == "s3":
        # S3 holds objects up to 5 TiB: refused now, not after days of uploading.
        assert too_long.status_code == 413
        assert advertised == str(5 * TiB)
    else:
        assert too_long.status_code == 201
        assert advertised is None
