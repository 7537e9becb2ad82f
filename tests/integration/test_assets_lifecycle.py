"""The asset lifecycle end to end: real media through real tus clients against
`tusd-py serve --assets`, down to the state, the measured duration and the ledger."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from assets_helpers import (
    DURATION_PATTERN,
    EXPECTED_TYPE,
    TUS,
    MediaCache,
    Platform,
    assert_ready,
    find_node,
    js_upload,
    patch,
    run_js,
    start_platform,
    started_minutes,
    upload_all,
    upload_id,
)
from tusclient.client import TusClient

if TYPE_CHECKING:
    from assets_helpers import ServerFactory

PRICE = 7
KiB = 1024


@pytest.fixture(scope="session")
def node() -> str:
    node = find_node()
    if node is None:
        pytest.skip("node is not on PATH; tus-js-client needs Node.js >= 18")
    return node


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaCache:
    return MediaCache(tmp_path_factory.mktemp("media"))


def chunk_for(path: Path) -> int:
    """Several PATCHes per file, the first one holding the whole head the sniffer reads."""
    return max(16 * KiB, -(-path.stat().st_size // 4))


def new_platform(
    server_factory: ServerFactory, tmp_path: Path, *, balance: int, flags: tuple[str, ...] = ()
) -> Platform:
    return start_platform(server_factory, tmp_path / "data", price=PRICE, balance=balance, flags=flags)


def upload_with_api(p: Platform, path: Path) -> str:
    """POST /v1/assets, then PATCH the file to the transfer URL; returns the asset id."""
    data = path.read_bytes()
    asset = p.create_asset(len(data))
    upload_all(asset["upload_url"], data, chunk_for(path))
    return str(asset["id"])


# -- media ends ready, with the right fields and charge -------------------------------------------

# (format, seconds, how the asset is created): "api" is POST /v1/assets and the client resumes
# its transfer URL; "metadata" and "header" create it on the tus endpoint with the key in
# Upload-Metadata or in an Authorization header; "creation-with-upload" also sends the first
# chunk in the creating POST.
JS_CASES = [
    ("mp3", 3, "api"),
    ("wav", 3, "creation-with-upload"),
    ("flac", 61, "metadata"),
    ("m4a", 3, "header"),
    ("mp4", 3, "api"),
    ("webm", 3, "metadata"),
]
TUSPY_CASES = [
    ("mp3", 3, "header"),
    ("wav", 121, "api"),
    ("ogg", 3, "api"),
    ("opus", 3, "metadata"),
    ("mp4", 3, "metadata"),
    ("webm", 3, "api"),
]


def js_send(node: str, p: Platform, path: Path, creation: str) -> str:
    options: dict[str, Any] = {}
    if creation == "api":
        options["uploadUrl"] = p.create_asset(path.stat().st_size)["upload_url"]
    elif creation == "header":
        options["metadata"] = {"project_id": p.tenant.project_id, "filename": path.name}
        options["headers"] = p.auth
    else:
        options["metadata"] = {"project_id": p.tenant.project_id, "api_key": p.tenant.key, "filename": path.name}
        options["uploadDataDuringCreation"] = creation == "creation-with-upload"
    report = js_upload(node, p.server.endpoint, path, chunk_for(path), **options)
    assert report["stopped"] is False
    if creation == "api":
        assert report["url"] == options["uploadUrl"]
    return upload_id(report["url"])


def tuspy_send(p: Platform, path: Path, creation: str) -> str:
    if creation == "api":
        url = p.create_asset(path.stat().st_size)["upload_url"]
        uploader = TusClient(p.server.endpoint).uploader(file_path=str(path), chunk_size=chunk_for(path), url=url)
    elif creation == "metadata":
        metadata = {"project_id": p.tenant.project_id, "api_key": p.tenant.key, "filename": path.name}
        uploader = TusClient(p.server.endpoint).uploader(
            file_path=str(path), chunk_size=chunk_for(path), metadata=metadata
        )
    else:
        client = TusClient(p.server.endpoint, headers=p.auth)
        uploader = client.uploader(
            file_path=str(path), chunk_size=chunk_for(path), metadata={"project_id": p.tenant.project_id}
        )
    uploader.upload()
    assert uploader.url is not None
    assert uploader.offset == path.stat().st_size
    return upload_id(uploader.url)


@pytest.mark.parametrize("client", ["tus-js-client", "tuspy"])
def test_audio_and_video_uploaded_by_a_tus_client_end_ready_and_charged_per_started_minute(
    client: str,
    server_factory: ServerFactory,
    tmp_path: Path,
    media: MediaCache,
    request: pytest.FixtureRequest,
) -> None:
    balance = 1000
    p = new_platform(server_factory, tmp_path, balance=balance)
    cases = JS_CASES if client == "tus-js-client" else TUSPY_CASES
    sent: list[tuple[str, str, int, Path]] = []
    for fmt, seconds, creation in cases:
        path = media(fmt, seconds)
        if client == "tus-js-client":
            asset_id = js_send(request.getfixturevalue("node"), p, path, creation)
        else:
            asset_id = tuspy_send(p, path, creation)
        sent.append((asset_id, fmt, seconds, path))

    expected_charges = {}
    for asset_id, fmt, seconds, path in sent:
        asset = p.wait_for(asset_id)
        measured = assert_ready(asset, fmt, path.stat().st_size, seconds)
        assert asset["project_id"] == p.tenant.project_id
        request.node.user_properties.append((f"{client}:{fmt}:{seconds}s", str(measured)))
        expected_charges[asset_id] = started_minutes(seconds) * PRICE
        # The key given in the metadata is a credential: it is not kept with the upload.
        info = httpx.head(p.server.endpoint + asset_id, headers=TUS, timeout=10)
        assert info.status_code == 200
        assert p.tenant.key not in info.headers.get("Upload-Metadata", "")

    charges = p.charges()
    assert len(charges) == len(sent), "every asset is charged exactly once"
    assert dict(charges) == expected_charges
    assert p.balance() == balance - sum(expected_charges.values())


# -- bytes that are not media ---------------------------------------------------------------------


def pdf_like() -> bytes:
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    return head + random.Random(1).randbytes(20_000 - len(head))


def png_like() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    head = b"\x89PNG\r\n\x1a\n" + chunk
    return head + random.Random(2).randbytes(20_000 - len(head))


def random_bytes() -> bytes:
    return random.Random(3).randbytes(20_000)


NOT_MEDIA = {"pdf": pdf_like, "png": png_like, "random": random_bytes}


def assert_refused_as_not_media(response: httpx.Response) -> None:
    assert response.status_code == 415, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["message"]


def assert_failed(p: Platform, asset_id: str, code: str) -> dict[str, Any]:
    asset = p.wait_for(asset_id)
    assert asset["state"] == "failed", asset
    assert asset["error_code"] == code
    assert isinstance(asset["error_message"], str)
    assert asset["error_message"]
    assert asset["duration"] is None
    assert asset["upload_url"] is None
    return asset


def send_first_bytes(p: Platform, data: bytes, first_patch: str) -> tuple[dict[str, Any], httpx.Response]:
    """Create an asset for `data` and PATCH it; the response is the PATCH that completes the head."""
    asset = p.create_asset(len(data))
    url = asset["upload_url"]
    offset = 0
    if first_patch == "100-bytes":
        # 100 bytes are too few to judge: they are kept, and the PATCH completing the head is judged.
        first = patch(url, 0, data[:100])
        assert first.status_code == 204, f"{first.status_code} {first.text}"
        waiting = p.asset(asset["id"])
        assert (waiting["state"], waiting["kind"]) == ("pending_upload", None)
        offset = 100
    return asset, patch(url, offset, data[offset:])


@pytest.mark.parametrize("first_patch", ["whole-file", "100-bytes"])
def test_bytes_that_are_not_media_are_refused_with_415_and_removed(
    first_patch: str, server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    balance = 100
    p = new_platform(server_factory, tmp_path, balance=balance)
    for name, make in NOT_MEDIA.items():
        asset, response = send_first_bytes(p, make(), first_patch)

        assert_refused_as_not_media(response)
        failed = assert_failed(p, asset["id"], "unsupported_media_type")
        assert failed["kind"] is None, name
        assert not (p.server.upload_dir / asset["id"]).exists(), f"{name}: the refused bytes are still stored"
        assert httpx.head(asset["upload_url"], headers=TUS, timeout=10).status_code in (404, 410), name
    assert p.charges() == []
    assert p.balance() == balance

    # The same requests carrying real media are taken: the refusals above are about the bytes.
    mp3 = media("mp3", 3).read_bytes()
    asset, response = send_first_bytes(p, mp3, first_patch)
    assert response.status_code == 204, response.text
    assert_ready(p.wait_for(asset["id"]), "mp3", len(mp3), 3)
    assert p.charges() == [(asset["id"], PRICE)]


def test_tus_js_client_hears_415_for_bytes_that_are_not_media(
    node: str, server_factory: ServerFactory, tmp_path: Path
) -> None:
    p = new_platform(server_factory, tmp_path, balance=100)
    path = tmp_path / "slides.pdf"
    path.write_bytes(pdf_like())
    # A client-declared type changes nothing: the bytes decide.
    metadata = {"project_id": p.tenant.project_id, "api_key": p.tenant.key, "filetype": "audio/mpeg"}

    # The first bytes in a PATCH, then in the creating POST itself.
    for during_creation in (False, True):
        done = run_js(
            node, p.server.endpoint, path, 8 * KiB, metadata=metadata, uploadDataDuringCreation=during_creation
        )

        assert done.returncode == 1, done.stdout
        assert json.loads(done.stderr.strip().splitlines()[-1])["status"] == 415

    listed = httpx.get(
        p.server.origin + "/v1/assets", params={"project_id": p.tenant.project_id}, headers=p.auth, timeout=10
    ).json()["data"]
    assert len(listed) == 2
    for asset in listed:
        assert_failed(p, asset["id"], "unsupported_media_type")
        assert not (p.server.upload_dir / asset["id"]).exists()
    assert p.charges() == []
    assert p.balance() == 100


# -- media that cannot be read to the end ---------------------------------------------------------


def test_truncated_mp4_uploaded_completely_fails_unreadable_and_is_not_charged(
    server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    balance = 100
    p = new_platform(server_factory, tmp_path, balance=balance)
    # Index at the end (cut off) and index first (the data it points to cut off).
    moov_last = media.truncated("mp4", 3, 0.5)
    moov_first = media.truncated("mp4", 3, 0.5, faststart=True)

    for path in (moov_last, moov_first):
        asset_id = tuspy_send(p, path, "api")
        asset = assert_failed(p, asset_id, "media_unreadable")
        # The first bytes are an mp4's: what it is was known, only reading it failed.
        assert (asset["kind"], asset["extension"], asset["mime_type"]) == EXPECTED_TYPE["mp4"]
        assert asset["size"] == path.stat().st_size

    assert p.charges() == []
    assert p.balance() == balance


# -- balance, pending payment, top-ups ------------------------------------------------------------


def test_small_balance_gives_pending_payment_until_a_top_up_covers_it(
    server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    p = new_platform(server_factory, tmp_path, balance=5)
    path = media("mp3", 3)
    asset_id = upload_with_api(p, path)

    pending = p.wait_for(asset_id)
    assert pending["state"] == "pending_payment", pending
    # Measured, and the bytes kept: only the payment is missing.
    assert DURATION_PATTERN.match(pending["duration"])
    assert abs(float(pending["duration"]) - 3) <= 0.1
    assert pending["size"] == path.stat().st_size
    assert (p.server.upload_dir / asset_id).stat().st_size == path.stat().st_size
    assert p.balance() == 5
    assert p.charges() == []

    refused = p.top_up(100, token="not-the-admin-token")
    assert refused.status_code == 401
    assert p.balance() == 5

    response = p.top_up(2)

    assert response.status_code == 200, response.text
    assert response.json() == {"account_id": p.tenant.account_id, "balance": 0}
    assert_ready(p.asset(asset_id), "mp3", path.stat().st_size, 3)
    assert p.charges() == [(asset_id, PRICE)]
    assert p.balance() == 0

    assert p.top_up(3).json()["balance"] == 3
    assert p.charges() == [(asset_id, PRICE)], "a later top-up charges nothing again"
    assert p.top_ups() == [5, 2, 3]


def test_top_up_activates_the_oldest_pending_asset_first(
    server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    p = new_platform(server_factory, tmp_path, balance=0)
    older = upload_with_api(p, media("flac", 61))  # two started minutes
    newer = upload_with_api(p, media("mp3", 3))  # one
    assert p.wait_for(older)["state"] == "pending_payment"
    assert p.wait_for(newer)["state"] == "pending_payment"

    # Enough for either one alone: the older one takes it.
    assert p.top_up(2 * PRICE).json()["balance"] == 0

    assert p.asset(older)["state"] == "ready"
    assert p.asset(newer)["state"] == "pending_payment"
    assert p.charges() == [(older, 2 * PRICE)]

    assert p.top_up(PRICE).json()["balance"] == 0
    assert p.asset(newer)["state"] == "ready"
    assert p.charges() == [(older, 2 * PRICE), (newer, PRICE)]


# Two worker processes: the top-ups race across processes, not only inside one event loop.
@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_concurrent_top_ups_charge_each_pending_asset_once(
    workers: int, server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    p = new_platform(server_factory, tmp_path, balance=0, flags=("--workers", str(workers)))
    assets = {
        upload_with_api(p, media(fmt, seconds)): started_minutes(seconds) * PRICE
        for fmt, seconds in [("mp3", 3), ("flac", 61), ("ogg", 3)]
    }
    for asset_id in assets:
        assert p.wait_for(asset_id)["state"] == "pending_payment"

    threads = 10
    amount = 4
    start = threading.Barrier(threads)
    statuses: list[int] = []

    def top_up() -> None:
        start.wait(10)
        statuses.append(p.top_up(amount).status_code)

    clients = [threading.Thread(target=top_up) for _ in range(threads)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(60)

    assert statuses == [200] * threads
    charges = p.charges()
    assert sorted(asset_id for asset_id, _ in charges) == sorted(assets), "each asset charged exactly once"
    assert dict(charges) == assets
    assert p.top_ups() == [amount] * threads
    assert p.balance() == threads * amount - sum(assets.values())
    # 40 covers all 28: whatever the order the top-ups ran in, every asset ends paid.
    assert {p.asset(asset_id)["state"] for asset_id in assets} == {"ready"}


# -- restart while processing ---------------------------------------------------------------------


def test_server_killed_during_processing_finishes_the_asset_once_after_restart(
    server_factory: ServerFactory, tmp_path: Path, media: MediaCache, request: pytest.FixtureRequest
) -> None:
    balance = 100
    p = new_platform(server_factory, tmp_path, balance=balance)
    seconds = 600
    path = media("wav", seconds)  # 8 kHz mono: 9.6 MB, some 0.3 s to measure
    data = path.read_bytes()
    asset = p.create_asset(len(data))
    url = asset["upload_url"]
    assert patch(url, 0, data[: 4 * 1024 * KiB]).status_code == 204

    last = patch(url, 4 * 1024 * KiB, data[4 * 1024 * KiB :])
    seen = p.asset(asset["id"])["state"]
    p.server.kill()

    assert last.status_code == 204, last.text
    request.node.user_properties.append(("state when killed", seen))
    assert seen in ("processing", "ready")
    p.restart(server_factory)
    finished = p.wait_for(asset["id"], timeout=30)

    measured = assert_ready(finished, "wav", len(data), seconds)
    request.node.user_properties.append(("wav:600s", str(measured)))
    charge = started_minutes(seconds) * PRICE
    assert p.charges() == [(asset["id"], charge)]
    assert p.balance() == balance - charge
    # Processing again after the restart must not charge again either.
    time.sleep(0.5)
    assert p.charges() == [(asset["id"], charge)]


def test_server_killed_between_the_last_byte_and_processing_still_finishes_the_asset(
    node: str, server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    p = new_platform(server_factory, tmp_path, balance=100)
    path = media("mp3", 3)
    data = path.read_bytes()
    asset = p.create_asset(len(data))
    head = 8 * KiB
    assert patch(asset["upload_url"], 0, data[:head]).status_code == 204

    # Another writer holding the database (an admin command, a slow transaction) keeps the
    # server from recording "processing" once the last byte is stored; it dies in that window.
    blocker = sqlite3.connect(p.database, isolation_level=None, timeout=10)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        last = threading.Thread(target=patch_ignoring_errors, args=(asset["upload_url"], head, data[head:]))
        last.start()
        assert wait_for_stored_size(p.server.upload_dir / asset["id"], len(data)) == len(data)
        # Read on the blocking connection: the server's own reads would wait for it too.
        state = blocker.execute("SELECT state FROM assets WHERE id = ?", (asset["id"],)).fetchone()
        assert state == ("pending_upload",)
        p.server.kill()
        last.join(10)
    finally:
        blocker.close()
    p.restart(server_factory)

    # The client comes back, as it would after any failed request.
    resumed = js_upload(node, p.server.endpoint, path, chunk_for(path), uploadUrl=p.server.endpoint + asset["id"])

    assert resumed["stopped"] is False
    assert_ready(p.wait_for(asset["id"], timeout=5), "mp3", len(data), 3)
    assert p.charges() == [(asset["id"], PRICE)]


def test_reading_an_asset_does_not_wait_for_another_writer(server_factory: ServerFactory, tmp_path: Path) -> None:
    p = new_platform(server_factory, tmp_path, balance=0)
    asset = p.create_asset(1000)
    blocker = sqlite3.connect(p.database, isolation_level=None, timeout=10)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        response = httpx.get(f"{p.server.origin}/v1/assets/{asset['id']}", headers=p.auth, timeout=3)
    finally:
        blocker.close()

    assert response.status_code == 200
    assert response.json()["state"] == "pending_upload"


def patch_ignoring_errors(url: str, offset: int, data: bytes) -> None:
    with contextlib.suppress(httpx.HTTPError):
        patch(url, offset, data)


# -- an interrupted upload resumed by tus-js-client -----------------------------------------------


def wait_for_stored_size(path: Path, size: int, timeout: float = 10.0) -> int:
    """Poll the data file, not HEAD: a HEAD would ask the stalled PATCH to let go."""
    deadline = time.monotonic() + timeout
    while True:
        current = path.stat().st_size if path.exists() else -1
        if current == size or time.monotonic() > deadline:
            return current
        time.sleep(0.02)


def test_interrupted_tus_js_client_uploads_resume_to_ready(
    node: str, server_factory: ServerFactory, tmp_path: Path, media: MediaCache
) -> None:
    p = new_platform(server_factory, tmp_path, balance=100)
    path = media("mp4", 10)
    size = path.stat().st_size
    chunk = 16 * KiB
    cut = 2 * chunk + 1_234
    assert size > cut + chunk

    # A connection dropped mid-PATCH, resumed from the transfer URL POST /v1/assets gave.
    created = p.create_asset(size)
    first = js_upload(node, p.server.endpoint, path, chunk, uploadUrl=created["upload_url"], cutAfter=cut)
    assert first["stopped"] is True
    assert wait_for_stored_size(p.server.upload_dir / created["id"], cut) == cut
    midway = p.asset(created["id"])
    assert midway["state"] == "pending_upload"
    assert (midway["kind"], midway["extension"], midway["mime_type"]) == EXPECTED_TYPE["mp4"]
    assert midway["size"] is None
    assert midway["upload_url"] == created["upload_url"]

    second = js_upload(node, p.server.endpoint, path, chunk, uploadUrl=created["upload_url"])
    assert second["offsets"][0] == cut + chunk
    assert_ready(p.wait_for(created["id"]), "mp4", size, 10)

    # A clean stop between PATCHes of an asset created on the tus endpoint, found again
    # through tus-js-client's URL storage.
    storage = str(tmp_path / "tus-urls.json")
    metadata = {"project_id": p.tenant.project_id, "api_key": p.tenant.key}
    stopped = js_upload(node, p.server.endpoint, path, chunk, metadata=metadata, urlStorage=storage, stopAfter=chunk)
    assert stopped["stopped"] is True
    assert p.asset(upload_id(stopped["url"]))["state"] == "pending_upload"
    resumed = js_upload(node, p.server.endpoint, path, chunk, metadata=metadata, urlStorage=storage)
    assert resumed["resumed"] is True
    assert resumed["url"] == stopped["url"]
    assert_ready(p.wait_for(upload_id(stopped["url"])), "mp4", size, 10)

    assert p.charges() == [(created["id"], PRICE), (upload_id(stopped["url"]), PRICE)]
    assert p.balance() == 100 - 2 * PRICE
