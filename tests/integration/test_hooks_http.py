"""HTTP webhooks end to end: a real receiver shapes what a real client sees."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import RunningServer, serve_app, start_server
from hooks_receiver import Receiver, patch_slowly, uploads_in
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from tusd_py.hooks import verify
from tusd_py.protocol.metadata import decode_metadata

SECRET = "s3cret-for-tests"
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    return Receiver(secret=SECRET)


@pytest.fixture(scope="module")
def tus(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serve_app(receiver.app()) as origin:
        server = start_server(
            tmp_path_factory.mktemp("uploads"),
            *("--hooks-http", origin + "/hooks", "--hooks-secret", SECRET),
            *("--hooks-http-forward-headers", "Authorization,X-Tenant"),
            *("--hooks-http-retry", "0", "--hooks-http-timeout", "5s"),
            *("--progress-hooks-interval", "0.2s"),
        )
        yield server
        server.stop()


@pytest.fixture(autouse=True)
def fresh_receiver(receiver: Receiver) -> None:
    receiver.reset()
    receiver.secret = SECRET


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def metadata_header(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(client: httpx.Client, tus: RunningServer, length: int, **metadata: str) -> httpx.Response:
    headers = {**TUS, "Upload-Length": str(length)}
    if metadata:
        headers["Upload-Metadata"] = metadata_header(**metadata)
    return client.post(tus.endpoint, headers=headers)


def patch(client: httpx.Client, url: str, offset: int, body: Any) -> httpx.Response:
    return client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(offset)}, content=body)


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def reject_when(key: str, value: str, answer: dict[str, Any]) -> Any:
    def answerer(body: dict[str, Any]) -> tuple[int, Any]:
        return (200, answer) if body["Event"]["Upload"]["MetaData"].get(key) == value else (200, {})

    return answerer


# -- pre-create ----------------------------------------------------------------------


def test_pre_create_rejection_reaches_the_client_and_creates_nothing(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-create"] = reject_when(
        "filename",
        "secret.exe",
        {
            "RejectUpload": True,
            "HTTPResponse": {"StatusCode": 403, "Body": "executables are not allowed", "Header": {"X-Why": "type"}},
        },
    )
    before = uploads_in(tus.upload_dir)

    response = create(client, tus, 10, filename="secret.exe")

    assert response.status_code == 403
    assert response.text.strip() == "executables are not allowed"
    assert response.headers["X-Why"] == "type"
    assert "Location" not in response.headers
    assert uploads_in(tus.upload_dir) == before
    (call,) = receiver.of_type("pre-create")
    assert call.signature_ok is True
    assert call.upload["MetaData"] == {"filename": "secret.exe"}
    assert call.upload["Size"] == 10


def test_pre_create_rejection_without_status_is_a_400(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-create"] = lambda body: (200, {"RejectUpload": True})

    response = create(client, tus, 10)

    assert response.status_code == 400
    assert "Location" not in response.headers


def test_pre_create_rejection_seen_by_tuspy(tus: RunningServer, receiver: Receiver, tmp_path: Path) -> None:
    receiver.answers["pre-create"] = lambda body: (
        200,
        {"RejectUpload": True, "HTTPResponse": {"StatusCode": 403, "Body": "quota exceeded"}},
    )
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 100)

    uploader = tus_client.TusClient(tus.endpoint).uploader(str(source), chunk_size=64)
    with pytest.raises(TusCommunicationError) as raised:
        uploader.upload()

    assert raised.value.status_code == 403


def test_pre_create_changes_id_and_metadata(tus: RunningServer, receiver: Receiver, client: httpx.Client) -> None:
    receiver.answers["pre-create"] = lambda body: (
        200,
        {"ChangeFileInfo": {"ID": "asset_42-a", "MetaData": {"filename": "renamed.txt", "owner": "alice"}}},
    )

    response = create(client, tus, 5, filename="original.txt", tag="dropped")

    assert response.status_code == 201, response.text
    assert response.headers["Location"] == tus.endpoint + "asset_42-a"
    head = client.head(response.headers["Location"], headers=TUS)
    assert head.status_code == 200
    assert decode_metadata(head.headers["Upload-Metadata"]) == {"filename": "renamed.txt", "owner": "alice"}
    assert (tus.upload_dir / "asset_42-a").exists()
    # Later events speak of the new id and metadata.
    calls = receiver.wait_for(lambda calls: any(c.type == "post-create" for c in calls))
    (post_create,) = [c for c in calls if c.type == "post-create"]
    assert post_create.upload["ID"] == "asset_42-a"
    assert post_create.upload["MetaData"] == {"filename": "renamed.txt", "owner": "alice"}


def test_pre_create_changed_id_seen_by_tuspy(tus: RunningServer, receiver: Receiver, tmp_path: Path) -> None:
    receiver.answers["pre-create"] = lambda body: (200, {"ChangeFileInfo": {"ID": "from-tuspy"}})
    source = tmp_path / "b.bin"
    source.write_bytes(bytes(range(256)) * 4)

    uploader = tus_client.TusClient(tus.endpoint).uploader(str(source), chunk_size=300)
    uploader.upload()

    assert uploader.url == tus.endpoint + "from-tuspy"
    assert (tus.upload_dir / "from-tuspy").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("bad_id", ["../escape", "a" * 129, "white space", "dot.dot"])
def test_pre_create_invalid_new_id_is_a_502_and_creates_nothing(
    tus: RunningServer, receiver: Receiver, client: httpx.Client, bad_id: str
) -> None:
    receiver.answers["pre-create"] = lambda body: (200, {"ChangeFileInfo": {"ID": bad_id}})
    before = uploads_in(tus.upload_dir)

    response = create(client, tus, 5)

    assert response.status_code == 502
    assert "Traceback" not in response.text
    assert uploads_in(tus.upload_dir) == before


def test_wrong_secret_fails_the_signature_check(tus: RunningServer, receiver: Receiver, client: httpx.Client) -> None:
    receiver.secret = "not-the-servers-secret"
    before = uploads_in(tus.upload_dir)

    response = create(client, tus, 5)

    # The receiver refuses an unsigned-looking call, so the blocking hook fails.
    assert response.status_code == 502
    (call,) = receiver.of_type("pre-create")
    assert call.signature_ok is False
    assert uploads_in(tus.upload_dir) == before


# -- the event itself ----------------------------------------------------------------


def test_events_have_tusd_shape_signature_id_and_forwarded_headers(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    # Forwarded headers come from the request that caused each event, so both carry them.
    extra = {"Authorization": "Bearer abc", "X-Tenant": "t1", "X-Not-Forwarded": "no"}
    created = client.post(
        tus.endpoint,
        headers={**TUS, **extra, "Upload-Length": "4", "Upload-Metadata": metadata_header(filename="shape.txt")},
    )
    url = created.headers["Location"]
    response = client.patch(url, headers={**TUS, **OCTET, **extra, "Upload-Offset": "0"}, content=b"data")
    assert response.status_code == 204

    calls = receiver.wait_for(lambda calls: any(c.type == "post-finish" for c in calls))
    assert [c.type for c in calls if c.type != "post-receive"] == [
        "pre-create",
        "post-create",
        "pre-finish",
        "post-finish",
    ]
    finish = next(c for c in calls if c.type == "post-finish")
    assert set(finish.body) >= {"Type", "Event"}
    assert finish.upload == {
        "ID": upload_id(url),
        "Size": 4,
        "SizeIsDeferred": False,
        "Offset": 4,
        "MetaData": {"filename": "shape.txt"},
        "IsPartial": False,
        "IsFinal": False,
        "PartialUploads": None,
        "Storage": finish.upload["Storage"],
    }
    request = finish.body["Event"]["HTTPRequest"]
    assert request["Method"] == "PATCH"
    assert request["URI"] == "/files/" + upload_id(url)
    assert request["RemoteAddr"].startswith("127.0.0.1:")
    assert request["Header"]["Upload-Offset"] == ["0"]
    for call in calls:
        assert call.signature_ok is True
        assert call.headers["hook-event-id"] == call.event_id
        assert call.headers["authorization"] == "Bearer abc"
        assert call.headers["x-tenant"] == "t1"
        assert "x-not-forwarded" not in call.headers
    assert len({c.event_id for c in calls}) == len(calls)


def test_signature_recipe_matches_the_documented_one(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    assert create(client, tus, 0).status_code == 201
    calls = receiver.wait_for(lambda calls: any(c.type == "post-finish" for c in calls))
    header = calls[0].headers["hook-signature"]
    fields = dict(part.split("=", 1) for part in header.split(","))
    assert set(fields) == {"t", "v1"}
    assert abs(int(fields["t"]) - time.time()) < 60
    assert not verify("another-secret", b"{}", header)


# -- post-receive StopUpload ---------------------------------------------------------


def slow_body(chunks: int, size: int, pause: float) -> Iterator[bytes]:
    for _ in range(chunks):
        yield b"s" * size
        time.sleep(pause)


def test_post_receive_stop_upload_ends_the_patch_in_flight(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    def stop_once_bytes_arrive(body: dict[str, Any]) -> tuple[int, Any]:
        if body["Event"]["Upload"]["Offset"] > 0:
            return 200, {"StopUpload": True, "HTTPResponse": {"Body": "stopped by policy", "Header": {"X-Stop": "1"}}}
        return 200, {}

    receiver.answers["post-receive"] = stop_once_bytes_arrive
    chunks, size, pause = 150, 64 * 1024, 0.03
    total = chunks * size
    url = create(client, tus, total).headers["Location"]

    result = patch_slowly(url, chunks, size, pause)

    assert result.status == 400
    assert result.body.strip() == "stopped by policy"
    assert result.headers["x-stop"] == "1"
    assert result.chunks_sent < chunks, "the PATCH ran to its end instead of being stopped"
    assert result.elapsed < chunks * pause
    head = client.head(url, headers=TUS)
    kept = int(head.headers["Upload-Offset"])
    assert 0 < kept < total
    assert (tus.upload_dir / upload_id(url)).stat().st_size == kept
    # The upload can go on from where it stopped once the hook allows it.
    receiver.answers.clear()
    assert patch(client, url, kept, b"s" * (total - kept)).status_code == 204


def test_post_receive_stop_upload_reaches_a_streaming_httpx_client(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["post-receive"] = lambda body: (
        (200, {"StopUpload": True, "HTTPResponse": {"StatusCode": 409, "Body": "enough"}})
        if body["Event"]["Upload"]["Offset"] > 0
        else (200, {})
    )
    chunks, size = 60, 32 * 1024
    url = create(client, tus, chunks * size).headers["Location"]

    response = patch(client, url, 0, slow_body(chunks, size, 0.02))

    assert response.status_code == 409
    assert response.text.strip() == "enough"
    assert 0 < int(client.head(url, headers=TUS).headers["Upload-Offset"]) < chunks * size


def test_post_receive_fires_while_bytes_flow_and_at_the_end(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    chunks, size = 20, 16 * 1024
    url = create(client, tus, chunks * size).headers["Location"]

    assert patch(client, url, 0, slow_body(chunks, size, 0.05)).status_code == 204

    calls = receiver.wait_for(lambda calls: any(c.type == "post-finish" for c in calls))
    offsets = [c.upload["Offset"] for c in calls if c.type == "post-receive"]
    # About 1 s of body at one event per 0.2 s: some in between, never a flood.
    assert 2 <= len(offsets) <= 10
    assert offsets == sorted(offsets)
    assert offsets[-1] == chunks * size


# -- pre-finish and pre-terminate ----------------------------------------------------


def test_pre_finish_failure_fails_the_final_patch_and_keeps_the_bytes(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-finish"] = lambda body: (
        200,
        {"HTTPResponse": {"StatusCode": 422, "Body": "virus found", "Header": {"X-Scan": "infected"}}},
    )
    url = create(client, tus, 6).headers["Location"]

    response = patch(client, url, 0, b"EICAR!")

    assert response.status_code == 422
    assert response.text.strip() == "virus found"
    assert response.headers["X-Scan"] == "infected"
    assert int(client.head(url, headers=TUS).headers["Upload-Offset"]) == 6
    assert (tus.upload_dir / upload_id(url)).read_bytes() == b"EICAR!"
    # The refused upload never counts as finished.
    receiver.wait_for(lambda calls: any(c.type == "post-receive" and c.upload["Offset"] == 6 for c in calls))
    time.sleep(0.5)
    assert receiver.of_type("post-finish", upload_id(url)) == []


def test_pre_terminate_refusal_keeps_the_upload(tus: RunningServer, receiver: Receiver, client: httpx.Client) -> None:
    receiver.answers["pre-terminate"] = lambda body: (
        200,
        {"RejectTermination": True, "HTTPResponse": {"StatusCode": 403, "Body": "legal hold"}},
    )
    url = create(client, tus, 3).headers["Location"]
    assert patch(client, url, 0, b"abc").status_code == 204

    response = client.delete(url, headers=TUS)

    assert response.status_code == 403
    assert response.text.strip() == "legal hold"
    assert client.head(url, headers=TUS).status_code == 200
    assert (tus.upload_dir / upload_id(url)).read_bytes() == b"abc"


def test_pre_terminate_refusal_without_status_is_a_400(
    tus: RunningServer, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.answers["pre-terminate"] = lambda body: (200, {"RejectTermination": True})
    url = create(client, tus, 3).headers["Location"]

    assert client.delete(url, headers=TUS).status_code == 400
    assert client.head(url, headers=TUS).status_code == 200


def test_termination_allowed_fires_post_terminate(tus: RunningServer, receiver: Receiver, client: httpx.Client) -> None:
    url = create(client, tus, 3).headers["Location"]

    assert client.delete(url, headers=TUS).status_code == 204

    assert client.head(url, headers=TUS).status_code == 404
    calls = receiver.wait_for(lambda calls: any(c.type == "post-terminate" for c in calls))
    (terminated,) = [c for c in calls if c.type == "post-terminate"]
    assert terminated.upload["ID"] == upload_id(url)
    # Blocking hooks are called in the request; post-events arrive through the outbox, so
    # only their order among themselves is promised.
    assert sorted(c.type for c in calls) == sorted(["pre-create", "post-create", "pre-terminate", "post-terminate"])
    assert [c.type for c in calls if c.type.startswith("post-")] == ["post-create", "post-terminate"]
