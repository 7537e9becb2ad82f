"""The IETF resumable uploads draft on the tus endpoint, from a client written from the
draft: creation, offset retrieval, append, completion, cancellation, limits, and every
refusal the draft names, answered as problem details."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import serve_app
from draft_client import PARTIAL_UPLOAD, DraftClient, Response

from tusd_py.app import create_app

MAX_SIZE = 64 * 1024


@pytest.fixture
def client(tmp_path: Path) -> Iterator[DraftClient]:
    with serve_app(create_app(tmp_path, base_path="/files/", max_size=MAX_SIZE)) as origin:
        yield DraftClient(origin)


def stored(client: DraftClient, url: str) -> bytes:
    response = client.request("GET", url)
    assert response.status == 200, response
    return response.body


def assert_draft(response: Response) -> None:
    """Every draft answer names the interop version and none is a tus answer."""
    assert response.header("upload-draft-interop-version") == "8"
    assert response.header("tus-resumable") is None


# -- creation ---------------------------------------------------------------------------------------


def test_a_creation_carrying_the_whole_representation_completes_the_upload(client: DraftClient) -> None:
    data = os.urandom(5000)
    created = client.create("/files/", data, complete=True)

    assert created.status == 201
    assert_draft(created)
    assert created.complete is True
    assert created.offset == 5000
    assert created.location.startswith(f"http://{client.host}:{client.port}/files/")
    state = client.retrieve_offset(created.location)
    assert state.status == 204
    assert_draft(state)
    assert (state.complete, state.offset, state.length) == (True, 5000, 5000)
    assert state.header("cache-control") == "no-store"
    assert stored(client, created.location) == data


def test_a_partial_creation_then_appends_complete_the_upload(client: DraftClient) -> None:
    data = os.urandom(9000)
    created = client.create("/files/", data[:3000], complete=False, length=9000)

    assert created.status == 201
    assert (created.complete, created.offset) == (False, 3000)
    assert created.limits["max-size"] == MAX_SIZE
    url = created.location
    middle = client.append(url, 3000, data[3000:6000], complete=False)
    assert (middle.status, middle.complete, middle.offset) == (204, False, 6000)
    assert_draft(middle)
    last = client.append(url, 6000, data[6000:], complete=True)
    assert (last.status, last.complete, last.offset) == (204, True, 9000)
    assert stored(client, url) == data


def test_an_empty_creation_gives_the_url_before_any_byte_is_sent(client: DraftClient) -> None:
    """The flow without 104: create with no content, then append (the draft's careful creation)."""
    data = os.urandom(4000)
    created = client.create("/files/", complete=False)

    assert (created.status, created.complete, created.offset) == (201, False, 0)
    state = client.retrieve_offset(created.location)
    assert (state.complete, state.offset, state.length) == (False, 0, None)
    assert "max-age" in state.limits
    client.append(created.location, 0, data[:1000], complete=False)
    last = client.append(created.location, 1000, data[1000:], complete=True)
    assert (last.complete, last.offset) == (True, 4000)
    assert client.retrieve_offset(created.location).length == 4000
    assert stored(client, created.location) == data


def test_an_empty_representation_is_complete_at_once(client: DraftClient) -> None:
    created = client.create("/files/", b"", complete=True)

    assert (created.status, created.complete, created.offset) == (201, True, 0)
    state = client.retrieve_offset(created.location)
    assert (state.complete, state.offset, state.length) == (True, 0, 0)


def test_a_chunked_creation_learns_the_length_at_its_end(client: DraftClient) -> None:
    created = client.request("POST", "/files/", {"Upload-Complete": "?1"}, [b"abc", b"defg", b"h"])

    assert (created.status, created.complete, created.offset) == (201, True, 8)
    assert client.retrieve_offset(created.location).length == 8
    assert stored(client, created.location) == b"abcdefgh"


def test_an_empty_append_completes_an_upload_of_unknown_length(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False)
    client.append(created.location, 3, b"de", complete=False)
    assert client.retrieve_offset(created.location).length is None

    done = client.append(created.location, 5, b"", complete=True)

    assert (done.status, done.complete, done.offset) == (204, True, 5)
    assert client.retrieve_offset(created.location).length == 5


def test_a_client_that_reached_the_length_may_still_send_an_empty_completion(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False, length=5)
    reached = client.append(created.location, 3, b"de", complete=False)
    # The length was known: reaching it stores the last byte, and the upload is complete.
    assert reached.complete is True

    again = client.append(created.location, 5, b"", complete=True)

    assert (again.status, again.complete, again.offset) == (204, True, 5)


def test_creation_metadata_comes_from_content_type_and_disposition(tmp_path: Path, client: DraftClient) -> None:
    created = client.create(
        "/files/",
        b"x",
        complete=True,
        content_type="text/plain",
        content_disposition="inline; filename*=UTF-8''na%C3%AFve.txt",
    )
    download = client.request("GET", created.location)

    assert download.header("content-type") == "text/plain; charset=utf-8"
    assert "filename*=UTF-8''na%C3%AFve.txt" in (download.header("content-disposition") or "")


def test_a_careful_client_uploads_in_parts(client: DraftClient) -> None:
    data = os.urandom(20_000)
    url, last = client.upload("/files/", data, part_size=3000)

    assert (last.complete, last.offset) == (True, 20_000)
    assert stored(client, url) == data


# -- discovery and limits ----------------------------------------------------------------------------


def test_options_announces_partial_uploads_and_the_limits(client: DraftClient) -> None:
    for url in ("/files/", "/files/abc"):
        response = client.discover(url)
        assert response.status == 204
        assert_draft(response)
        assert PARTIAL_UPLOAD in (response.header("accept-patch") or "")
        assert response.limits == {"max-size": MAX_SIZE, "max-age": 24 * 3600}


def test_without_limits_no_upload_limit_is_sent(tmp_path: Path) -> None:
    with serve_app(create_app(tmp_path, expire_after=None)) as origin:
        client = DraftClient(origin)
        assert client.discover("/").header("upload-limit") is None
        created = client.create("/", b"ab", complete=False)
        assert created.header("upload-limit") is None
        assert client.retrieve_offset(created.location).header("upload-limit") is None


def test_a_creation_above_max_size_is_413_with_the_limit(client: DraftClient) -> None:
    response = client.create("/files/", complete=False, length=MAX_SIZE + 1)

    assert response.status == 413
    assert_draft(response)
    assert response.limits["max-size"] == MAX_SIZE
    assert response.problem()["status"] == 413
    assert response.header("location") is None


def test_creation_content_past_max_size_is_413_before_any_upload_exists(client: DraftClient, tmp_path: Path) -> None:
    response = client.create("/files/", b"z" * (MAX_SIZE + 1), complete=False)

    assert response.status == 413
    assert response.limits["max-size"] == MAX_SIZE
    assert response.header("location") is None
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_an_upload_of_unknown_length_cannot_grow_past_max_size(client: DraftClient) -> None:
    created = client.create("/files/", b"a" * 1000, complete=False)

    response = client.append(created.location, 1000, b"b" * MAX_SIZE, complete=False)

    assert response.status == 413
    assert response.limits["max-size"] == MAX_SIZE
    assert client.retrieve_offset(created.location).offset == 1000


def test_a_chunked_body_past_max_size_keeps_what_fits(client: DraftClient) -> None:
    created = client.create("/files/", complete=False)
    blocks = [b"c" * 16384] * 5

    response = client.request(
        "PATCH",
        created.location,
        {"Upload-Complete": "?0", "Upload-Offset": "0", "Content-Type": PARTIAL_UPLOAD},
        blocks,
    )

    assert response.status == 413
    assert response.limits["max-size"] == MAX_SIZE
    assert client.retrieve_offset(created.location).offset == MAX_SIZE


def test_a_later_announced_length_past_max_size_is_413(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False)

    response = client.append(created.location, 3, b"", complete=False, length=MAX_SIZE + 1)

    assert response.status == 413
    assert response.limits["max-size"] == MAX_SIZE
    assert client.retrieve_offset(created.location).length is None


# -- cancellation -------------------------------------------------------------------------------------------


def test_cancellation_removes_the_upload(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False)

    cancelled = client.cancel(created.location)

    assert cancelled.status == 204
    assert_draft(cancelled)
    gone = client.retrieve_offset(created.location)
    assert gone.status == 404
    assert client.append(created.location, 3, b"d", complete=True).problem()["status"] == 404


# -- refusals the draft names ----------------------------------------------------------------------------------


def test_a_mismatching_offset_is_409_with_the_expected_offset(client: DraftClient) -> None:
    created = client.create("/files/", b"abcde", complete=False, length=10)

    for provided in (0, 4, 6):
        response = client.append(created.location, provided, b"fghij", complete=True)
        assert response.status == 409
        assert_draft(response)
        assert response.offset == 5
        assert response.problem_type() == "mismatching-upload-offset"
        problem = response.problem()
        assert (problem["expected-offset"], problem["provided-offset"]) == (5, provided)
    assert client.retrieve_offset(created.location).offset == 5


def test_appending_to_a_completed_upload_is_refused(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=True)

    with_content = client.append(created.location, 3, b"d", complete=False)
    empty = client.append(created.location, 3, b"", complete=False)
    wrong_offset = client.append(created.location, 1, b"", complete=True)

    assert (with_content.status, with_content.problem_type()) == (400, "inconsistent-upload-length")
    assert (empty.status, empty.problem_type()) == (400, "completed-upload")
    assert (wrong_offset.status, wrong_offset.problem_type()) == (400, "completed-upload")
    assert stored(client, created.location) == b"abc"


def test_two_length_indicators_that_disagree_are_inconsistent(client: DraftClient) -> None:
    response = client.create("/files/", b"abc", complete=True, length=10)

    assert response.status == 400
    assert response.problem_type() == "inconsistent-upload-length"
    assert response.header("location") is None


def test_creation_content_past_its_own_length_is_inconsistent(client: DraftClient, tmp_path: Path) -> None:
    response = client.create("/files/", b"abcdef", complete=False, length=4)

    assert (response.status, response.problem_type()) == (400, "inconsistent-upload-length")
    assert response.header("location") is None
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_an_append_cannot_change_the_length(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False, length=10)

    other_length = client.append(created.location, 3, b"de", complete=False, length=11)
    completes_short = client.append(created.location, 3, b"de", complete=True)
    goes_past = client.append(created.location, 3, b"defghijk", complete=False)

    for response in (other_length, completes_short, goes_past):
        assert response.status == 400
        assert response.problem_type() == "inconsistent-upload-length"
    assert client.retrieve_offset(created.location).offset == 3


def test_an_announced_length_below_the_stored_bytes_is_inconsistent(client: DraftClient) -> None:
    created = client.create("/files/", b"abcdef", complete=False)

    response = client.append(created.location, 6, b"", complete=False, length=4)

    assert (response.status, response.problem_type()) == (400, "inconsistent-upload-length")


def test_a_chunked_completion_that_misses_the_length_keeps_its_bytes(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False, length=10)

    response = client.request(
        "PATCH",
        created.location,
        {"Upload-Complete": "?1", "Upload-Offset": "3", "Content-Type": PARTIAL_UPLOAD},
        [b"de"],
    )

    assert (response.status, response.problem_type()) == (400, "inconsistent-upload-length")
    state = client.retrieve_offset(created.location)
    assert (state.offset, state.complete) == (5, False)


def test_a_chunked_body_past_the_length_is_inconsistent_and_nothing_past_it_is_stored(client: DraftClient) -> None:
    created = client.create("/files/", b"abc", complete=False, length=6)

    response = client.request(
        "PATCH",
        created.location,
        {"Upload-Complete": "?1", "Upload-Offset": "3", "Content-Type": PARTIAL_UPLOAD},
        [b"def", b"ghi"],
    )

    assert (response.status, response.problem_type()) == (400, "inconsistent-upload-length")
    assert stored(client, created.location) == b"abcdef"


@pytest.mark.parametrize("content_type", ["application/offset+octet-stream", "application/octet-stream", ""])
def test_an_append_must_be_a_partial_upload(client: DraftClient, content_type: str) -> None:
    created = client.create("/files/", b"abc", complete=False)

    response = client.append(created.location, 3, b"d", complete=True, content_type=content_type)

    assert response.status == 415
    assert response.header("accept-patch") == PARTIAL_UPLOAD
    assert response.problem()["type"] == "about:blank"
    assert client.retrieve_offset(created.location).offset == 3


@pytest.mark.parametrize("value", [None, "1", "true", "?1, ?0"])
def test_a_creation_needs_upload_complete_as_a_boolean(client: DraftClient, value: str | None) -> None:
    headers = {} if value is None else {"Upload-Complete": value}

    response = client.request("POST", "/files/", headers, b"abc")

    assert response.status == 400
    assert "Upload-Complete" in str(response.problem()["detail"])
    assert response.header("location") is None


def test_structured_field_parameters_are_understood(client: DraftClient) -> None:
    created = client.request("POST", "/files/", {"Upload-Complete": "?0;note=1", "Upload-Length": "6;x"}, b"abc")
    done = client.request(
        "PATCH",
        created.location,
        {"Upload-Complete": " ?1 ", "Upload-Offset": "3;a=?1", "Content-Type": PARTIAL_UPLOAD + "; x=y"},
        b"def",
    )

    assert (created.status, done.status, done.complete) == (201, 204, True)


@pytest.mark.parametrize("offset", [None, "-1", "1.0", "abc"])
def test_an_append_needs_a_valid_upload_offset(client: DraftClient, offset: str | None) -> None:
    created = client.create("/files/", b"abc", complete=False)
    headers = {"Upload-Complete": "?1", "Content-Type": PARTIAL_UPLOAD}
    if offset is not None:
        headers["Upload-Offset"] = offset

    response = client.request("PATCH", created.location, headers, b"d")

    assert response.status == 400
    assert "Upload-Offset" in str(response.problem()["detail"])


@pytest.mark.parametrize(
    ("version", "says"),
    [("7", "this server speaks interop version 8"), ("9", "not supported"), ("eight", "must be an Integer")],
)
def test_an_unknown_interop_version_is_refused(client: DraftClient, version: str, says: str) -> None:
    response = client.request(
        "POST", "/files/", {"Upload-Complete": "?1", "Upload-Draft-Interop-Version": version}, b"a", interop=False
    )

    assert response.status == 400
    assert_draft(response)
    assert says in str(response.problem()["detail"])


def test_repeated_interop_version_lines_are_one_field_that_is_not_an_integer(client: DraftClient) -> None:
    response = client.create("/files/", b"a", complete=True, upload_draft_interop_version="7")

    assert response.status == 400
    assert "must be an Integer" in str(response.problem()["detail"])


def test_a_request_in_both_protocols_is_refused(client: DraftClient) -> None:
    response = client.create("/files/", b"abc", complete=True, tus_resumable="1.0.0")

    assert response.status == 400
    assert "not both" in str(response.problem()["detail"])


def test_unknown_uploads_and_methods_are_problems(client: DraftClient) -> None:
    missing = client.retrieve_offset("/files/0123456789abcdef")
    put = client.request("PUT", "/files/", {"Upload-Complete": "?1"}, b"abc")
    bad_id = client.cancel("/files/..")

    assert (missing.status, put.status) == (404, 405)
    assert put.header("allow") == "OPTIONS, POST"
    assert bad_id.status == 404
    for response in (missing, put, bad_id):
        assert_draft(response)
