"""Draft uploads across broken connections: content cut mid-way keeps what arrived, the
client resumes from the offset the server reports, and a newer request for the upload
ends a stalled one (as the draft recommends) instead of waiting for it to time out."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import serve_app
from draft_client import PARTIAL_UPLOAD, DraftClient, cut, read_response, wait_for

from tusd_py.app import create_app

KiB = 1024
# How long a client that stalls waits before the next request, so the server has surely
# taken every sent byte off the socket (bytes still in a buffer would not count).
SETTLE = 0.5


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture
def client(app_dir: Path) -> Iterator[DraftClient]:
    with serve_app(create_app(app_dir, base_path="/files/")) as origin:
        yield DraftClient(origin)


def append_head(url: str, offset: int, *, complete: bool) -> dict[str, str]:
    return {"Upload-Complete": "?1" if complete else "?0", "Upload-Offset": str(offset), "Content-Type": PARTIAL_UPLOAD}


def test_an_append_cut_mid_way_keeps_its_bytes_and_resumes(client: DraftClient) -> None:
    data = os.urandom(300 * KiB)
    url = client.create("/files/", complete=False).location
    sock = client.open("PATCH", url, append_head(url, 0, complete=True), len(data))
    sock.sendall(data[: 120 * KiB])
    time.sleep(SETTLE)
    cut(sock)

    state = client.retrieve_offset(url)

    assert state.status == 204
    assert (state.offset, state.complete) == (120 * KiB, False)
    # The cut request announced the length (Upload-Complete: ?1 with Content-Length).
    assert state.length == len(data)
    done = client.append(url, 120 * KiB, data[120 * KiB :], complete=True)
    assert (done.status, done.complete, done.offset) == (204, True, len(data))
    assert client.request("GET", url).body == data


def test_a_creation_cut_mid_way_keeps_its_bytes_under_the_url_it_would_have_answered(
    client: DraftClient, app_dir: Path
) -> None:
    """Without 104 the client never learnt the URL; the upload and its bytes exist all the same."""
    data = os.urandom(200 * KiB)
    sock = client.open("POST", "/files/", {"Upload-Complete": "?1"}, len(data))
    sock.sendall(data[: 80 * KiB])
    time.sleep(SETTLE)
    cut(sock)
    wait_for(lambda: [p for p in app_dir.iterdir() if p.suffix == ".info"])
    (info,) = [p for p in app_dir.iterdir() if p.suffix == ".info"]

    state = client.retrieve_offset("/files/" + info.stem)

    assert (state.offset, state.complete, state.length) == (80 * KiB, False, len(data))


def test_a_new_offset_retrieval_ends_a_stalled_append_and_reports_its_bytes(client: DraftClient) -> None:
    data = os.urandom(256 * KiB)
    url = client.create("/files/", complete=False, length=len(data)).location
    stalled = client.open("PATCH", url, append_head(url, 0, complete=True), len(data))
    stalled.sendall(data[: 100 * KiB])
    time.sleep(SETTLE)

    started = time.monotonic()
    state = client.retrieve_offset(url)
    waited = time.monotonic() - started

    assert (state.status, state.offset, state.complete) == (204, 100 * KiB, False)
    # Far below the 60 s read timeout: the stalled request was asked to let go.
    assert waited < 5
    with stalled:
        ended = read_response(stalled)
    assert ended.status == 400
    assert ended.header("content-type") == "application/problem+json"
    assert ended.offset == 100 * KiB
    done = client.append(url, 100 * KiB, data[100 * KiB :], complete=True)
    assert (done.status, done.complete) == (204, True)
    assert client.request("GET", url).body == data


def test_a_new_append_takes_over_from_a_stalled_one(client: DraftClient) -> None:
    data = os.urandom(128 * KiB)
    url = client.create("/files/", complete=False).location
    stalled = client.open("PATCH", url, append_head(url, 0, complete=False), 100 * KiB)
    stalled.sendall(data[: 40 * KiB])
    time.sleep(SETTLE)

    # A client that believes the first append failed resends from what it last knew.
    again = client.append(url, 0, data, complete=True)

    assert again.status == 409
    assert again.problem()["expected-offset"] == 40 * KiB
    done = client.append(url, 40 * KiB, data[40 * KiB :], complete=True)
    assert (done.status, done.complete, done.offset) == (204, True, len(data))
    stalled.close()
    assert client.request("GET", url).body == data


def test_cancellation_ends_an_append_in_flight(client: DraftClient) -> None:
    url = client.create("/files/", complete=False).location
    stalled = client.open("PATCH", url, append_head(url, 0, complete=True), 100 * KiB)
    stalled.sendall(b"x" * 10 * KiB)
    time.sleep(SETTLE)

    cancelled = client.cancel(url)

    assert cancelled.status == 204
    with stalled:
        assert read_response(stalled).status == 400
    assert client.retrieve_offset(url).status == 404


def test_a_silent_client_is_ended_by_the_read_timeout_and_keeps_its_bytes(tmp_path: Path) -> None:
    with serve_app(create_app(tmp_path, read_timeout=0.5)) as origin:
        client = DraftClient(origin)
        url = client.create("/", complete=False).location
        with client.open("PATCH", url, append_head(url, 0, complete=True), 50 * KiB) as silent:
            silent.sendall(b"y" * 20 * KiB)
            ended = read_response(silent)

        assert ended.status == 408
        assert ended.problem()["status"] == 408
        assert ended.offset == 20 * KiB
        state = client.retrieve_offset(url)
        assert (state.offset, state.complete, state.length) == (20 * KiB, False, 50 * KiB)


def test_a_resuming_client_completes_after_repeated_cuts(client: DraftClient) -> None:
    data = os.urandom(400 * KiB)
    url = client.create("/files/", complete=False).location
    offset = 0
    for cut_after in (50 * KiB, 70 * KiB, 90 * KiB):
        sock = client.open("PATCH", url, append_head(url, offset, complete=True), len(data) - offset)
        sock.sendall(data[offset : offset + cut_after])
        time.sleep(SETTLE)
        cut(sock)
        assert client.retrieve_offset(url).offset == offset + cut_after
        offset += cut_after

    done = client.append(url, offset, data[offset:], complete=True)

    assert (done.complete, done.offset) == (True, len(data))
    assert client.request("GET", url).body == data
