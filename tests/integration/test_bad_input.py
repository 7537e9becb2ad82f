"""Malformed requests: each is refused with a 4xx, never a 5xx, and touches nothing."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import STORES, FileBackend, RunningServer, S3Backend, start_server, store_backend
from hypothesis import given, settings
from hypothesis import strategies as st

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
NUMBERS = ["-1", "abc", "1.5", "", "0x10", "1e3", "+5", "5 5", str(2**64), str(2**63), "9" * 40, "\u00b2"]


@pytest.fixture(scope="module", params=STORES)
def tus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # The upload dir is a child so that a path escaping it would land in `root`.
    root = tmp_path_factory.mktemp("root")
    (root / "secret").write_bytes(b"do not touch")
    server = start_server(root / "data", backend=store_backend(request, request.param, root / "data"))
    yield server
    server.stop()


# Headers refused before the store is reached: on S3 they would test the same parsing again,
# each request slower. What may reach the store (ids, whatever the fuzzer gets past) runs on both.
files_only = pytest.mark.parametrize("tus", ["file"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def create(client: httpx.Client, tus: RunningServer, length: int = 10) -> str:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201
    return response.headers["Location"]


def wire(headers: dict[str, str], *extra: tuple[str, bytes]) -> list[tuple[bytes, bytes]]:
    """Header pairs as bytes, so values outside ASCII go out exactly as given."""
    return [(k.encode(), v.encode()) for k, v in headers.items()] + [(k.encode(), v) for k, v in extra]


def listing(tus: RunningServer) -> list[str]:
    return tus.store.names()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` but outside the upload dir, with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and "data" not in p.parts}


def raw_request(port: int, request: bytes) -> int:
    """Send bytes exactly as given (no client-side path normalisation); return the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1])


# -- lengths and offsets ---------------------------------------------------------------------


@files_only
@pytest.mark.parametrize("value", NUMBERS)
def test_bad_upload_length_is_400(client: httpx.Client, tus: RunningServer, value: str) -> None:
    before = listing(tus)
    response = client.post(tus.endpoint, headers=wire(TUS, ("Upload-Length", value.encode("latin-1"))))
    assert response.status_code == 400
    assert listing(tus) == before


@files_only
def test_missing_upload_length_is_400(client: httpx.Client, tus: RunningServer) -> None:
    before = listing(tus)
    assert client.post(tus.endpoint, headers=TUS).status_code == 400
    assert listing(tus) == before


@files_only
@pytest.mark.parametrize("value", ["2", "0", "true", "", "1.0", "yes"])
def test_bad_upload_defer_length_is_400(client: httpx.Client, tus: RunningServer, value: str) -> None:
    assert client.post(tus.endpoint, headers={**TUS, "Upload-Defer-Length": value}).status_code == 400


@files_only
def test_length_and_deferred_length_together_are_400(client: httpx.Client, tus: RunningServer) -> None:
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "5", "Upload-Defer-Length": "1"})
    assert response.status_code == 400


@files_only
@pytest.mark.parametrize("value", [None, *NUMBERS])
def test_bad_upload_offset_is_400(client: httpx.Client, tus: RunningServer, value: str | None) -> None:
    url = create(client, tus)
    headers = wire({**TUS, **OCTET}, *([] if value is None else [("Upload-Offset", value.encode("latin-1"))]))

    response = client.patch(url, headers=headers, content=b"abc")

    assert response.status_code == 400
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    done = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"0123456789")
    assert done.status_code == 204
    assert tus.store.read(url.rsplit("/", 1)[-1]) == b"0123456789"


@files_only
@pytest.mark.parametrize("value", ["-1", "abc", str(2**64)])
def test_bad_upload_length_on_patch_is_400(client: httpx.Client, tus: RunningServer, value: str) -> None:
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Defer-Length": "1"}).headers["Location"]
    response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0", "Upload-Length": value}, content=b"a")
    assert response.status_code == 400
    assert client.head(url, headers=TUS).headers["Upload-Defer-Length"] == "1"


# -- metadata -------------------------------------------------------------------------------


@files_only
@pytest.mark.parametrize(
    "value",
    [
        "key not-base64!",
        "key dmFsdWU",  # missing padding
        "key dmFsdWU= extra",
        "ke y dmFsdWU=",
        ",",
        "key dmFsdWU=,",
        "key dmFsdWU=,key dmFsdWU=",
        "key /w==",  # base64 of a byte that is not UTF-8
        "kéy dmFsdWU=",
        "x" * 20000,
    ],
)
def test_malformed_metadata_is_400(client: httpx.Client, tus: RunningServer, value: str) -> None:
    before = listing(tus)
    response = client.post(
        tus.endpoint, headers=wire({**TUS, "Upload-Length": "3"}, ("Upload-Metadata", value.encode("utf-8")))
    )
    assert response.status_code == 400
    assert listing(tus) == before


# -- ids and paths -----------------------------------------------------------------------------


TARGETS = [
    "/files/..%2F..%2Fetc%2Fpasswd",
    "/files/..%2Fsecret",
    "/files/..%2fsecret",
    "/files/%2e%2e",
    "/files/%2e%2e%2fsecret",
    "/files/../secret",
    "/files/..",
    "/files/.",
    "/files/secret%00",
    "/files/a%20b",
    "/files/" + "a" * 300,
    "/files/" + "a" * 129,
    "/files/%2Fetc%2Fpasswd",
    "/files/..%5Csecret",
]


# Named without "/files/": ids that say "file" would join `-k file`, which selects the file runs.
@pytest.mark.parametrize("target", TARGETS, ids=[target.removeprefix("/files/") for target in TARGETS])
@pytest.mark.parametrize("method", ["HEAD", "GET", "PATCH", "DELETE", "POST"])
def test_malformed_ids_are_404_and_touch_nothing(tus: RunningServer, method: str, target: str) -> None:
    root = tus.upload_dir.parent
    before = snapshot(root), listing(tus)
    body = b"owned" if method in ("PATCH", "POST") else b""
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        "Upload-Offset: 0\r\nUpload-Length: 5\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body

    status = raw_request(tus.port, request)

    assert status in (400, 404)
    assert (snapshot(root), listing(tus)) == before
    assert (root / "secret").read_bytes() == b"do not touch"


@files_only
def test_longest_valid_id_shape_is_just_unknown(client: httpx.Client, tus: RunningServer) -> None:
    assert client.head(tus.endpoint + "a" * 128, headers=TUS).status_code == 404


# -- oversized headers --------------------------------------------------------------------------


@files_only
@pytest.mark.parametrize("size", [70 * 1024, 300 * 1024])
def test_huge_header_is_refused_with_4xx(client: httpx.Client, tus: RunningServer, size: int) -> None:
    url = create(client, tus)

    response = client.patch(
        url, headers={**TUS, **OCTET, "Upload-Offset": "0", "X-Padding": "p" * size}, content=b"abc"
    )

    assert response.status_code == 431
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"


@files_only
def test_many_headers_are_refused_with_4xx(client: httpx.Client, tus: RunningServer) -> None:
    headers = [*TUS.items(), ("Upload-Length", "3"), *((f"X-Filler-{i}", "v" * 100) for i in range(800))]
    response = client.post(tus.endpoint, headers=headers)
    assert 400 <= response.status_code < 500


# -- fuzzing ----------------------------------------------------------------------------------------

# Header values as the wire allows them: printable ASCII and Latin-1, no surrounding blanks.
_chars = st.characters(codec="latin-1", categories=("L", "N", "P", "S", "Zs"))
garbage = st.one_of(
    st.text(_chars, max_size=40).map(str.strip),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
small = st.integers(min_value=0, max_value=80).map(str)
b64 = st.binary(max_size=12).map(lambda raw: base64.b64encode(raw).decode())
metadata = st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True), b64), max_size=3).map(
    lambda pairs: ",".join(f"{k} {v}" for k, v in dict(pairs).items())
)


def mostly(
    common: st.SearchStrategy[str | None], weight: int, *rare: st.SearchStrategy[str | None]
) -> st.SearchStrategy[str | None]:
    """`common` `weight` times as often as each of `rare`."""
    choices = [common] * weight + list(rare)
    return st.integers(0, len(choices) - 1).flatmap(lambda i: choices[i])


checksum = st.one_of(st.just("correct"), b64.map(lambda d: "sha1 " + d), garbage)
# Headers are mostly absent or valid and sometimes garbage, so that requests get past the
# first check and reach the deeper ones.
POST = {
    "Upload-Length": mostly(small, 3, st.none(), garbage),
    "Upload-Defer-Length": mostly(st.none(), 4, st.just("1"), garbage),
    "Upload-Metadata": mostly(metadata, 2, st.none(), garbage),
    "Upload-Checksum": mostly(st.none(), 3, checksum),
    "Upload-Concat": mostly(st.none(), 4, st.just("partial"), garbage.map(lambda g: "final;" + g)),
}
PATCH = {
    "Upload-Offset": mostly(st.just("0"), 3, small, st.none(), garbage),
    "Upload-Length": mostly(st.none(), 3, small, garbage),
    "Upload-Checksum": mostly(st.none(), 2, checksum),
}


def encode(values: dict[str, str | None], body: bytes) -> list[tuple[bytes, bytes]]:
    if values.get("Upload-Checksum") == "correct":
        values["Upload-Checksum"] = "md5 " + base64.b64encode(hashlib.md5(body).digest()).decode()
    present = [(name, value.strip().encode("latin-1")) for name, value in values.items() if value is not None]
    return wire({**TUS, **OCTET}, *present)


def finish_and_read(client: httpx.Client, tus: RunningServer, url: str, head: httpx.Response) -> None:
    """HEAD's offset is what the store holds: finishing the upload from it gives exactly its length.

    An unfinished upload's bytes are not readable on every store, a finished one's are.
    """
    offset = int(head.headers["Upload-Offset"])
    length = head.headers.get("Upload-Length")
    remaining = 5 if length is None else int(length) - offset
    assert remaining >= 0
    if remaining > 1000:
        return  # a garbage length, far beyond what the fuzzer sends
    rest = b"\xee" * remaining
    if rest:
        headers = {**TUS, **OCTET, "Upload-Offset": str(offset)}
        if length is None:
            headers["Upload-Length"] = str(offset + len(rest))
        done = client.patch(url, headers=headers, content=rest)
        assert done.status_code == 204, done.text
    stored = tus.store.read(url.rsplit("/", 1)[-1])
    assert len(stored) == offset + len(rest)
    assert stored.endswith(rest)


# An example costs ten times more on S3, where the store sees the same few operations each time.
EXAMPLES = {FileBackend: 100, S3Backend: 20}


def test_random_header_values_never_cause_a_5xx(client: httpx.Client, tus: RunningServer) -> None:
    @settings(max_examples=EXAMPLES[type(tus.store)], deadline=None)
    @given(
        post=st.fixed_dictionaries(POST),
        patch=st.fixed_dictionaries(PATCH),
        first=st.binary(max_size=64),
        second=st.binary(max_size=64),
    )
    def exchange(post: dict[str, str | None], patch: dict[str, str | None], first: bytes, second: bytes) -> None:
        created = client.post(tus.endpoint, headers=encode(post, first), content=first)
        assert created.status_code < 500, (post, created.text)
        target = created.headers.get("Location") or create(client, tus, length=40)
        patched = client.patch(target, headers=encode(patch, second), content=second)
        assert patched.status_code < 500, (patch, patched.text)

        head = client.head(target, headers=TUS)
        assert head.status_code == 200
        # A final upload has no offset until its partials are finished.
        if "Upload-Offset" in head.headers:
            finish_and_read(client, tus, target, head)

    exchange()
