"""A blocking hook that fails or is too slow: a short, clear answer and nothing half-created."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningServer, free_port, serve_app, start_server
from hooks_receiver import Receiver, uploads_in

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
HOOK_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture(scope="module")
def tus(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_app(receiver.app()) as origin:
        server = start_server(
            tmp_path_factory.mktemp("uploads"),
            *("--hooks-http", origin + "/hooks", "--hooks-http-retry", "0"),
            *("--hooks-http-timeout", f"{HOOK_TIMEOUT}s", "--hooks-http-backoff", "0.1s"),
        )
        yield server
        server.stop()


@pytest.fixture(autouse=True)
def fresh_receiver(receiver: Receiver) -> None:
    receiver.reset()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def assert_short_reason(response: httpx.Response) -> None:
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text.strip()
    assert text
    assert "\n" not in text
    assert len(text) < 200
    assert "Traceback" not in text


def test_slow_pre_create_is_a_gateway_error_without_an_upload(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.delays["pre-create"] = 3.0
    before = uploads_in(tus.upload_dir)

    started = time.monotonic()
    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "5"})
    elapsed = time.monotonic() - started

    assert response.status_code in (502, 504)
    assert_short_reason(response)
    assert elapsed < 3.0, "the client waited for the slow hook instead of its timeout"
    assert "Location" not in response.headers
    assert uploads_in(tus.upload_dir) == before


def test_slow_pre_create_is_a_504(tus: RunningServer, receiver: Receiver, client: httpx.Client) -> None:
    receiver.delays["pre-create"] = 3.0

    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "5"})

    assert response.status_code == 504


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (500, b"internal error"),
        (503, b""),
        (200, b"this is not json"),
        (200, b'{"RejectUpload": "yes"}'),
        (200, b'{"HTTPResponse": {"StatusCode": 1000}}'),
        (200, b"[1, 2]"),
    ],
    ids=["500", "503", "not-json", "flag-not-bool", "status-out-of-range", "not-an-object"],
)
def test_receiver_errors_fail_pre_create_with_502(
    tus: RunningServer, receiver: Receiver, client: httpx.Client, status: int, payload: bytes
) -> None:
    receiver.answers["pre-create"] = lambda body: (status, payload)
    before = uploads_in(tus.upload_dir)

    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "5"})

    assert response.status_code == 502
    assert_short_reason(response)
    assert "Location" not in response.headers
    assert uploads_in(tus.upload_dir) == before
    assert len(receiver.of_type("pre-create")) == 1


def test_unreachable_receiver_fails_pre_create_with_502(tmp_path_factory: pytest.TempPathFactory) -> None:
    upload_dir = tmp_path_factory.mktemp("unreachable")
    server = start_server(
        upload_dir, "--hooks-http", f"http://127.0.0.1:{free_port()}/hooks", "--hooks-http-retry", "0"
    )
    try:
        response = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": "5"}, timeout=15)
    finally:
        server.stop()

    assert response.status_code == 502
    assert_short_reason(response)
    assert uploads_in(upload_dir) == []


def test_failing_pre_finish_keeps_bytes_and_answers_502(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-finish"] = lambda body: (500, b"boom")
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "3"}).headers["Location"]

    response = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"abc")

    assert response.status_code == 502
    assert_short_reason(response)
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "3"


def test_failing_pre_terminate_keeps_the_upload(tus: RunningServer, receiver: Receiver, client: httpx.Client) -> None:
    receiver.answers["pre-terminate"] = lambda body: (200, b"{not json")
    url = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "3"}).headers["Location"]

    response = client.delete(url, headers=TUS)

    assert response.status_code == 502
    assert_short_reason(response)
    assert client.head(url, headers=TUS).status_code == 200


def test_failing_post_hooks_never_change_the_clients_answer(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    for hook_type in ("post-create", "post-receive", "post-finish"):
        receiver.answers[hook_type] = lambda body: (500, b"down")

    created = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "3"})
    patched = client.patch(created.headers["Location"], headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=b"abc")

    assert created.status_code == 201
    assert patched.status_code == 204
    # The outbox keeps trying the failed post-create.
    receiver.wait_for(lambda calls: len([c for c in calls if c.type == "post-create"]) >= 2, timeout=5)


def test_failing_pre_finish_of_an_empty_upload_leaves_no_orphan(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-finish"] = lambda body: (500, b"boom")
    before = uploads_in(tus.upload_dir)

    response = client.post(tus.endpoint, headers={**TUS, "Upload-Length": "0"})

    assert response.status_code == 502
    # Either nothing was made, or the client is told where the upload is (as when a
    # creation-with-upload POST fails in pre-finish).
    assert uploads_in(tus.upload_dir) == before or "Location" in response.headers


def test_failing_pre_finish_in_creation_with_upload_tells_where_the_upload_is(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-finish"] = lambda body: (500, b"boom")

    response = client.post(tus.endpoint, headers={**TUS, **OCTET, "Upload-Length": "3"}, content=b"abc")

    assert response.status_code == 502
    assert client.head(response.headers["Location"], headers=TUS).headers["Upload-Offset"] == "3"
