"""Three `tusd-py serve` instances sharing one S3 bucket (Ceph's gateway) and one Redis,
as they would behind a load balancer: any instance continues any upload, one request per
upload at a time across instances, and a killed instance loses nothing it acknowledged."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from assets_helpers import admin_cli, media_factory, wait_for_state
from conftest import S3Backend, start_server

if TYPE_CHECKING:
    from conftest import RunningServer

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024
PART = 5 * MiB
# A lock whose holder died frees after this long; short, so the tests stay quick.
LOCK_EXPIRY = "2s"


def start_cluster(tmp_path: Path, rgw: Any, redis_url: str, *flags: str) -> list[RunningServer]:
    """Three instances, each with its own upload dir (its hook outbox), on one bucket."""
    backend = S3Backend(rgw)
    flags = ("--locker", redis_url, "--locker-expiry", LOCK_EXPIRY, "--s3-part-size", "5M", *flags)
    # Started side by side: each spends a second or two importing before it listens.
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda name: start_server(tmp_path / name, *flags, backend=backend), "abc"))


@pytest.fixture
def cluster(tmp_path: Path, ceph_s3: Any, redis_server: Any) -> Iterator[list[RunningServer]]:
    servers = start_cluster(tmp_path, ceph_s3, redis_server.url)
    yield servers
    for server in servers:
        server.stop()


def create(server: RunningServer, length: int) -> str:
    response = httpx.post(server.endpoint, headers={**TUS, "Upload-Length": str(length)})
    assert response.status_code == 201, response.text
    return response.headers["location"]


def on(server: RunningServer, url: str) -> str:
    """The same upload's URL on another instance (a balancer would route there)."""
    return server.origin + httpx.URL(url).path


def head_offset(url: str) -> int:
    response = httpx.head(url, headers=TUS, timeout=30)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def patch(url: str, offset: int, data: bytes) -> httpx.Response:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    return httpx.patch(url, content=data, headers=headers, timeout=60)


def start_patch(url: str, offset: int, length: int, first: bytes) -> socket.socket:
    """A PATCH that declares `length` bytes, sends `first` and then stalls."""
    parsed = httpx.URL(url)
    sock = socket.create_connection((parsed.host, parsed.port or 80))
    sock.sendall(
        (
            f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.host}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        + first
    )
    return sock


def read_status(sock: socket.socket, timeout: float = 30.0) -> int:
    sock.settimeout(timeout)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def stored_parts(rgw: Any, bucket: str, key: str) -> int:
    """Parts the gateway holds for the upload's multipart upload (what survives a crash)."""
    client = rgw.client()
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    total = 0
    for upload in uploads:
        if upload["Key"].endswith(key):
            parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            total += len(parts.get("Parts", []))
    return total


def test_an_upload_started_on_a_continues_on_b_and_finishes_on_c(cluster: list[RunningServer]) -> None:
    a, b, c = cluster
    data = os.urandom(13 * MiB + 12345)
    url = create(a, len(data))
    # A short first chunk leaves only a tail object; the next ones cross part boundaries.
    cuts = [0, 3 * MiB, 9 * MiB + 7, len(data)]
    for server, start, end in zip((a, b, c), cuts[:-1], cuts[1:], strict=True):
        assert head_offset(on(server, url)) == start
        response = patch(on(server, url), start, data[start:end])
        assert response.status_code == 204, response.text
        assert int(response.headers["upload-offset"]) == end
    for server in cluster:
        assert head_offset(on(server, url)) == len(data)
    downloaded = httpx.get(on(b, url), timeout=60)
    assert downloaded.status_code == 200
    assert hashlib.sha256(downloaded.content).digest() == hashlib.sha256(data).digest()
    assert a.store.read(url.rsplit("/", 1)[-1]) == data


def test_a_request_on_b_ends_the_stalled_patch_on_a_and_they_never_overlap(cluster: list[RunningServer]) -> None:
    a, b, c = cluster
    data = os.urandom(2 * MiB)
    url = create(a, len(data))
    sent = 700_000
    stalled = start_patch(url, 0, len(data), data[:sent])
    try:
        time.sleep(1.0)
        # B's PATCH from 0 is newer: A must let go (its bytes kept), then B learns the
        # offset moved on and is refused, instead of both writing at once.
        racing = patch(on(b, url), 0, data)
        assert racing.status_code == 409, racing.text
        assert read_status(stalled) == 400
    finally:
        stalled.close()
    offset = head_offset(on(c, url))
    assert offset == sent
    finished = patch(on(c, url), offset, data[offset:])
    assert finished.status_code == 204
    assert httpx.get(on(a, url), timeout=60).content == data


def test_an_instance_killed_mid_patch_loses_nothing_head_reported(cluster: list[RunningServer], ceph_s3: Any) -> None:
    a, b, c = cluster
    data = os.urandom(16 * MiB)
    url = create(a, len(data))
    upload_id = url.rsplit("/", 1)[-1]
    first = patch(url, 0, data[: 2 * MiB])
    assert first.status_code == 204
    reported = head_offset(on(b, url))
    assert reported == 2 * MiB
    # The next PATCH on A gets past a whole part, then A dies without a word.
    sock = start_patch(url, reported, len(data) - reported, data[reported : reported + 11 * MiB])
    try:
        deadline = time.monotonic() + 30
        while stored_parts(ceph_s3, a.store.bucket, upload_id) < 1:
            assert time.monotonic() < deadline, "no part reached the gateway"
            time.sleep(0.1)
        a.kill()
    finally:
        sock.close()
    # C waits for the dead holder's lock to expire, then sees at least what B reported.
    started = time.monotonic()
    offset = head_offset(on(c, url))
    assert time.monotonic() - started < 15
    assert offset >= reported
    assert offset % PART == 0 or offset == reported
    resumed = patch(on(c, url), offset, data[offset:])
    assert resumed.status_code == 204, resumed.text
    assert hashlib.sha256(httpx.get(on(b, url), timeout=60).content).digest() == hashlib.sha256(data).digest()


def test_instances_share_termination(cluster: list[RunningServer]) -> None:
    a, b, c = cluster
    url = create(a, 6 * MiB)
    assert patch(url, 0, os.urandom(MiB)).status_code == 204
    deleted = httpx.delete(on(b, url), headers=TUS)
    assert deleted.status_code == 204
    for server in (a, c):
        assert httpx.head(on(server, url), headers=TUS).status_code == 404
    assert a.store.names() == []


def test_assets_uploaded_across_instances_are_processed_and_charged_once(
    tmp_path: Path, ceph_s3: Any, redis_server: Any, postgres_server: Any
) -> None:
    database = postgres_server.create_database()
    price = 7
    admin = tmp_path / "admin"
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(
            start_cluster,
            tmp_path,
            ceph_s3,
            redis_server.url,
            "--assets",
            "--database",
            database,
            "--price-per-minute",
            str(price),
        )
        account = admin_cli(database, admin, "accounts", "create", "acme")
        project = admin_cli(database, admin, "projects", "create", "--account", account["id"], "talks")
        key = admin_cli(database, admin, "keys", "create", "--account", account["id"])["key"]
        admin_cli(database, admin, "billing", "top-up", account["id"], "1000")
        servers = starting.result(timeout=120)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        wav = media_factory.make_audio(tmp_path / "talk.wav", "wav", 2.0)
        data = wav.read_bytes()
        half = len(data) // 2
        asset_ids = []
        for n in range(6):
            creator, middle, last = (servers[(n + i) % 3] for i in range(3))
            created = httpx.post(
                creator.origin + "/v1/assets", json={"project_id": project["id"], "size": len(data)}, headers=auth
            )
            assert created.status_code == 201, created.text
            url = created.json()["upload_url"]
            assert patch(on(middle, url), 0, data[:half]).status_code == 204
            assert patch(on(last, url), half, data[half:]).status_code == 204
            asset_ids.append(created.json()["id"])
        for n, asset_id in enumerate(asset_ids):
            ready = wait_for_state(servers[n % 3].origin, asset_id, key, "ready", timeout=60)
            assert ready["state"] == "ready", ready
            assert float(ready["duration"]) == 2.0
        dbname = database.rsplit("/", 1)[1]
        charges = postgres_server.psql("SELECT charged_asset_id, amount FROM ledger WHERE kind = 'charge'", dbname)
        assert sorted(charges.split()) == sorted(f"{asset_id}|{price}" for asset_id in asset_ids)
        # Each asset's processing job was claimed once, by one instance.
        attempts = postgres_server.psql("SELECT attempts FROM assets", dbname)
        assert attempts.split() == ["1"] * 6
        balance = postgres_server.psql(f"SELECT balance FROM accounts WHERE id = '{account['id']}'", dbname)
        assert int(balance) == 1000 - 6 * price
    finally:
        for server in servers:
            server.stop()
