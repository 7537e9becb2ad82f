"""`tusd-py upload` against a real bare server: the bytes, the metadata, the chunks."""

from __future__ import annotations

import base64
import math
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from upload_helpers import MiB, download, head, make_file, parse_output, run_upload, state_entries

from tusd_py.client import RetryPolicy, TusClient, Uploader

if TYPE_CHECKING:
    from conftest import RunningServer


def _metadata(response: httpx.Response) -> dict[str, str]:
    pairs = [pair.split(" ") for pair in response.headers["Upload-Metadata"].split(",")]
    return {key: base64.b64decode(value).decode() for key, value in pairs}


def test_a_20_mib_file_arrives_whole_in_small_chunks(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "talk.mp3"
    data = make_file(file, 20 * MiB)
    state_file = tmp_path / "state" / "uploads.json"
    done = run_upload(file, state_file, "--endpoint", server.endpoint, "--chunk-size", "512K", "--metadata", "k=v w")
    assert done.returncode == 0, done.stderr
    url = parse_output(done.stdout)["upload_url"]
    assert url.startswith(server.endpoint)
    assert download(url) == data
    status = head(url)
    assert status.headers["Upload-Offset"] == status.headers["Upload-Length"] == str(len(data))
    assert _metadata(status) == {"filename": "talk.mp3", "filetype": "audio/mpeg", "k": "v w"}
    # A finished upload is forgotten: the same command again is a new upload.
    assert state_entries(state_file) == []


def test_each_patch_carries_at_most_one_chunk(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, 3 * MiB + 5)
    chunk = 256 * 1024
    patches: list[tuple[int, int]] = []

    def record(request: httpx.Request) -> None:
        if request.method == "PATCH":
            patches.append((int(request.headers["Upload-Offset"]), int(request.headers["Content-Length"])))

    with httpx.Client(event_hooks={"request": [record]}) as http:
        client = TusClient(http)
        url = client.create(server.endpoint, len(data), {"filename": file.name})
        Uploader(client, file, chunk_size=chunk, policy=RetryPolicy(retries=0)).send(url, 0)
    assert len(patches) == math.ceil(len(data) / chunk)
    assert patches == [(offset, min(chunk, len(data) - offset)) for offset in range(0, len(data), chunk)]
    assert download(url) == data


def test_a_chunk_is_streamed_from_the_file_not_read_whole(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, 20 * MiB)
    with httpx.Client() as http:
        client = TusClient(http)
        url = client.create(server.endpoint, len(data), {})
        uploader = Uploader(client, file, chunk_size=16 * MiB, policy=RetryPolicy(retries=0))
        tracemalloc.start()
        try:
            uploader.send(url, 0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # A 16 MiB chunk held in memory would show here; a streamed one is pieces of 64 KiB.
    assert peak < 4 * MiB, peak
    assert download(url) == data


def test_an_empty_file_is_a_complete_upload(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "empty.txt"
    file.write_bytes(b"")
    done = run_upload(file, tmp_path / "uploads.json", "--endpoint", server.endpoint, "--json")
    assert done.returncode == 0, done.stderr
    url = httpx.Response(200, content=done.stdout).json()["upload_url"]
    status = head(url)
    assert (status.headers["Upload-Offset"], status.headers["Upload-Length"]) == ("0", "0")
    assert _metadata(status) == {"filename": "empty.txt", "filetype": "text/plain"}


def test_the_progress_bar_reports_bytes(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    make_file(file, 2 * MiB)
    done = run_upload(file, tmp_path / "uploads.json", "--endpoint", server.endpoint, "--chunk-size", "1M")
    assert done.returncode == 0, done.stderr
    assert "data.bin" in done.stderr
    assert "2.0/2.0 MiB" in done.stderr
    assert "MiB/s" in done.stderr
