"""`tusd-py upload` stopped with Ctrl-C, then run again: it continues where the server is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from upload_helpers import (
    TUS,
    MiB,
    download,
    head,
    interrupt_midway,
    make_file,
    parse_output,
    run_upload,
    start_upload,
    state_entries,
)
from upload_proxy import Proxy, proxy_to

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import RunningServer

SIZE = 8 * MiB
# Slow enough that the interrupt lands mid-upload, whatever the machine.
RATE = 4 * MiB


@pytest.fixture
def proxy(server: RunningServer) -> Iterator[Proxy]:
    with proxy_to(server.port, rate=RATE) as proxy:
        yield proxy


def _interrupted(server: RunningServer, proxy: Proxy, file: Path, state_file: Path) -> tuple[str, int]:
    """Start the upload, Ctrl-C it past the first MiB; (upload URL, server's offset)."""
    args = ("--endpoint", proxy.origin + "/files/", "--chunk-size", "256K", "--no-progress")
    process = start_upload(file, state_file, *args)
    code, stderr, url = interrupt_midway(process, state_file, server.upload_dir, at_least=MiB)
    assert code == 130, stderr
    assert "bytes confirmed by the server at" in stderr
    assert "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    [entry] = state_entries(state_file)
    assert entry["upload_url"] == url
    assert entry["file"] == str(file.resolve())
    assert entry["size"] == file.stat().st_size
    offset = int(head(url).headers["Upload-Offset"])
    assert MiB <= offset < file.stat().st_size
    return url, offset


def test_ctrl_c_then_the_same_command_resumes_from_the_servers_offset(
    server: RunningServer, proxy: Proxy, tmp_path: Path
) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, SIZE)
    state_file = tmp_path / "uploads.json"
    url, offset = _interrupted(server, proxy, file, state_file)

    proxy.rate = None
    proxy.upstream_bytes = 0
    done = run_upload(file, state_file, "--endpoint", proxy.origin + "/files/", "--chunk-size", "256K")
    assert done.returncode == 0, done.stderr
    assert f"resuming {url} at byte {offset} of {SIZE}" in done.stderr
    assert parse_output(done.stdout)["upload_url"] == url
    assert download(url) == data
    # Only what the server lacked crossed the network again (plus request headers).
    assert proxy.upstream_bytes < SIZE - offset + 64 * 1024
    assert state_entries(state_file) == []


def test_a_remembered_upload_that_is_gone_starts_over(server: RunningServer, proxy: Proxy, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, SIZE)
    state_file = tmp_path / "uploads.json"
    url, _ = _interrupted(server, proxy, file, state_file)
    assert httpx.delete(url, headers=TUS, timeout=10).status_code == 204

    proxy.rate = None
    done = run_upload(file, state_file, "--endpoint", server.endpoint, "--no-progress")
    assert done.returncode == 0, done.stderr
    new_url = parse_output(done.stdout)["upload_url"]
    assert new_url != url
    assert download(new_url) == data
    assert head(url).status_code == 404


def test_a_changed_file_is_a_new_upload(server: RunningServer, proxy: Proxy, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    make_file(file, SIZE)
    state_file = tmp_path / "uploads.json"
    url, _ = _interrupted(server, proxy, file, state_file)
    changed = make_file(file, SIZE)

    done = run_upload(file, state_file, "--endpoint", proxy.origin + "/files/", "--no-progress")
    assert done.returncode == 0, done.stderr
    new_url = parse_output(done.stdout)["upload_url"]
    assert new_url != url
    assert "resuming" not in done.stderr
    assert download(new_url) == changed
    # The old entry stays: it still names the old content, which may come back.
    assert [entry["upload_url"] for entry in state_entries(state_file)] == [url]
