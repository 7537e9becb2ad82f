"""The concatenation and concatenation-unfinished extensions."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

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


def create(client: httpx.Client, tus: RunningServer, headers: dict[str, str]) -> httpx.Response:
    return client.post(tus.endpoint, headers={**TUS, **headers})


def partial(client: httpx.Client, tus: RunningServer, body: bytes, length: int | None = None) -> str:
    """A partial upload of `length` bytes (default len(body)) holding `body`."""
    size = len(body) if length is None else length
    response = create(client, tus, {"Upload-Concat": "partial", "Upload-Length": str(size)})
    assert response.status_code == 201
    url = response.headers["Location"]
    if body:
        assert patch(client, url, 0, body).status_code == 204
    return url


def final(client: httpx.Client, tus: RunningServer, *urls: str) -> httpx.Response:
    return create(client, tus, {"Upload-Concat": "final;" + " ".join(urls)})


def patch(client: httpx.Client, url: str, offset: int, body: bytes) -> httpx.Response:
    return client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset)}, content=body)


def test_final_upload_is_the_concatenation_of_its_partials(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"Hello, ")
    second = partial(client, tus, b"concatenated ")
    third = partial(client, tus, b"world")

    response = final(client, tus, first, second, third)

    assert response.status_code == 201
    url = response.headers["Location"]
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == b"Hello, concatenated world"
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Length"] == "25"
    assert head.headers["Upload-Offset"] == "25"


def test_final_head_names_its_partials_in_order(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"a")
    second = partial(client, tus, b"b")
    url = final(client, tus, second, first).headers["Location"]

    concat = client.head(url, headers=TUS).headers["Upload-Concat"]

    assert concat.startswith("final;")
    # Each entry is a URL (absolute or relative to the final upload) of one partial.
    named = [urljoin(url, entry) for entry in concat[len("final;") :].split()]
    assert named == [second, first]


def test_partial_head_says_partial(client: httpx.Client, tus: RunningServer) -> None:
    url = partial(client, tus, b"abc")
    assert client.head(url, headers=TUS).headers["Upload-Concat"] == "partial"


def test_partials_may_be_named_by_path(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"by ")
    second = partial(client, tus, b"path")

    response = final(client, tus, urlsplit(first).path, urlsplit(second).path)

    assert response.status_code == 201
    assert client.get(response.headers["Location"]).content == b"by path"


def test_partials_stay_usable_after_concatenation(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"one")
    assert final(client, tus, first).status_code == 201
    assert client.get(first).content == b"one"
    assert client.head(first, headers=TUS).headers["Upload-Offset"] == "3"


def test_patch_on_a_final_upload_is_403(client: httpx.Client, tus: RunningServer) -> None:
    url = final(client, tus, partial(client, tus, b"abc")).headers["Location"]

    response = patch(client, url, 3, b"more")

    assert response.status_code == 403
    assert client.get(url).content == b"abc"


def test_patch_on_an_unfinished_final_upload_is_403(client: httpx.Client, tus: RunningServer) -> None:
    url = final(client, tus, partial(client, tus, b"", length=3)).headers["Location"]
    assert patch(client, url, 0, b"abc").status_code == 403


def test_final_with_an_unknown_partial_is_400(client: httpx.Client, tus: RunningServer) -> None:
    known = partial(client, tus, b"abc")
    assert final(client, tus, known, tus.endpoint + "0" * 32).status_code == 400


def test_final_with_a_non_partial_upload_is_400(client: httpx.Client, tus: RunningServer) -> None:
    plain = create(client, tus, {"Upload-Length": "3"}).headers["Location"]
    assert patch(client, plain, 0, b"abc").status_code == 204
    known = partial(client, tus, b"abc")

    assert final(client, tus, known, plain).status_code == 400


def test_final_of_a_final_is_400(client: httpx.Client, tus: RunningServer) -> None:
    inner = final(client, tus, partial(client, tus, b"abc")).headers["Location"]
    assert final(client, tus, inner).status_code == 400


@pytest.mark.parametrize("value", ["final;", "final", "final;,", "partial;x", "whole", "final;../../etc/passwd"])
def test_malformed_upload_concat_is_400(client: httpx.Client, tus: RunningServer, value: str) -> None:
    before = tus.store.names()

    response = create(client, tus, {"Upload-Concat": value, "Upload-Length": "3"})

    assert response.status_code == 400
    assert tus.store.names() == before


def test_final_with_upload_length_is_400(client: httpx.Client, tus: RunningServer) -> None:
    known = partial(client, tus, b"abc")
    response = create(client, tus, {"Upload-Concat": f"final;{known}", "Upload-Length": "3"})
    assert response.status_code == 400


def test_final_declared_before_its_partials_finish(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"early ")
    second = partial(client, tus, b"la", length=4)

    response = final(client, tus, first, second)

    assert response.status_code == 201
    url = response.headers["Location"]
    head = client.head(url, headers=TUS)
    assert head.status_code == 200
    assert "Upload-Offset" not in head.headers
    assert client.get(url).status_code == 409

    assert patch(client, second, 2, b"te").status_code == 204

    # Complete as soon as the last partial is: no sweep or later request needed.
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == b"early late"
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == "10"


def test_unfinished_final_with_several_pending_partials(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"", length=2)
    second = partial(client, tus, b"", length=2)
    url = final(client, tus, first, second).headers["Location"]

    assert patch(client, second, 0, b"cd").status_code == 204
    assert "Upload-Offset" not in client.head(url, headers=TUS).headers
    assert client.get(url).status_code == 409
    assert patch(client, first, 0, b"ab").status_code == 204

    assert client.get(url).content == b"abcd"


def test_one_partial_may_feed_two_finals(client: httpx.Client, tus: RunningServer) -> None:
    shared = partial(client, tus, b"", length=3)
    other = partial(client, tus, b"!")
    one = final(client, tus, shared).headers["Location"]
    two = final(client, tus, shared, other).headers["Location"]

    assert patch(client, shared, 0, b"abc").status_code == 204

    assert client.get(one).content == b"abc"
    assert client.get(two).content == b"abc!"


def test_deferred_partial_completes_its_final(client: httpx.Client, tus: RunningServer) -> None:
    response = create(client, tus, {"Upload-Concat": "partial", "Upload-Defer-Length": "1"})
    assert response.status_code == 201
    deferred = response.headers["Location"]
    url = final(client, tus, partial(client, tus, b"x"), deferred).headers["Location"]

    declared = client.patch(
        deferred, headers={**TUS, **OCTET, "Upload-Offset": "0", "Upload-Length": "2"}, content=b"yz"
    )

    assert declared.status_code == 204
    assert client.get(url).content == b"xyz"


def test_finishing_a_partial_whose_final_was_deleted_succeeds(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"", length=3)
    url = final(client, tus, first).headers["Location"]
    assert client.delete(url, headers=TUS).status_code == 204

    response = patch(client, first, 0, b"abc")

    assert client.head(first, headers=TUS).headers["Upload-Offset"] == "3"
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"


def test_head_of_a_final_whose_partial_vanished_does_not_deny_it(client: httpx.Client, tus: RunningServer) -> None:
    first = partial(client, tus, b"", length=3)
    url = final(client, tus, first).headers["Location"]
    assert client.delete(first, headers=TUS).status_code == 204

    head = client.head(url, headers=TUS)

    assert head.status_code in (200, 410)
    assert client.delete(url, headers=TUS).status_code == 204


# -- --max-size ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=STORES)
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("limited")
    server = start_server(directory, "--max-size", "1000", backend=store_backend(request, request.param, directory))
    yield server
    server.stop()


def test_final_larger_than_the_max_size_is_413(client: httpx.Client, limited: RunningServer) -> None:
    first = partial(client, limited, b"a" * 600)
    second = partial(client, limited, b"b" * 600)

    assert final(client, limited, first, second).status_code == 413


def test_final_never_grows_past_the_max_size_through_a_deferred_partial(
    client: httpx.Client, limited: RunningServer
) -> None:
    known = partial(client, limited, b"a" * 600)
    response = create(client, limited, {"Upload-Concat": "partial", "Upload-Defer-Length": "1"})
    deferred = response.headers["Location"]
    created = final(client, limited, known, deferred)
    declared = client.patch(
        deferred, headers={**TUS, **OCTET, "Upload-Offset": "0", "Upload-Length": "600"}, content=b"b" * 600
    )

    download = client.get(created.headers["Location"]) if created.status_code == 201 else None

    assert declared.status_code in (204, 413)
    assert download is None or download.status_code != 200 or len(download.content) <= 1000
