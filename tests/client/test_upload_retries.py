"""`tusd-py upload` across a dropped network and a restarted server: retries from the
server's offset, and gives up with its state kept when the retries run out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from conftest import start_server
from upload_helpers import MiB, download, make_file, parse_output, run_upload, start_upload, state_entries, wait_until
from upload_proxy import proxy_to

if TYPE_CHECKING:
    import subprocess

    from conftest import RunningServer

SIZE = 8 * MiB
CHUNK = 512 * 1024
RATE = 4 * MiB


def _finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr


def _upload_url(state_file: Path) -> str:
    wait_until(lambda: bool(state_entries(state_file)), 30, "the upload to be remembered")
    return str(state_entries(state_file)[0]["upload_url"])


def _stored(upload_dir: Path, url: str) -> int:
    path = upload_dir / url.rsplit("/", 1)[-1]
    return path.stat().st_size if path.exists() else 0


def test_a_dropped_connection_is_retried_from_the_servers_offset(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, SIZE)
    state_file = tmp_path / "uploads.json"
    with proxy_to(server.port, rate=RATE) as proxy:
        args = ("--endpoint", proxy.origin + "/files/", "--chunk-size", "512K", "--retry-delay", "0.1", "--no-progress")
        process = start_upload(file, state_file, *args)
        url = _upload_url(state_file)
        # Mid-chunk: a connection dropped between two requests is only reopened by httpx.
        wait_until(lambda: _stored(server.upload_dir, url) >= 2 * MiB + CHUNK // 4, 30, "2 MiB on the server")
        proxy.drop()
        code, stdout, stderr = _finish(process)
        assert code == 0, stderr
        assert "retry 1/5" in stderr
        assert parse_output(stdout)["upload_url"] == url
        assert download(url) == data
    # At most the chunk in flight went twice.
    assert proxy.upstream_bytes < SIZE + CHUNK + 64 * 1024


def test_a_server_restarted_on_the_same_port_and_data_is_resumed(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, SIZE)
    state_file = tmp_path / "uploads.json"
    with proxy_to(server.port, rate=RATE) as proxy:
        args = ("--endpoint", proxy.origin + "/files/", "--chunk-size", "512K", "--no-progress")
        process = start_upload(file, state_file, *args, "--retries", "8", "--retry-delay", "0.25")
        url = _upload_url(state_file)
        wait_until(lambda: _stored(server.upload_dir, url) >= 2 * MiB + CHUNK // 4, 30, "2 MiB on the server")
        server.kill()
        restarted = start_server(server.upload_dir, port=server.port)
        try:
            code, stdout, stderr = _finish(process)
            assert code == 0, stderr
            assert "retry 1/8" in stderr
            assert parse_output(stdout)["upload_url"] == url
            assert download(url) == data
        finally:
            restarted.stop()
    assert proxy.upstream_bytes < SIZE + CHUNK + 64 * 1024


def test_spent_retries_end_with_a_clear_error_and_the_upload_resumable(server: RunningServer, tmp_path: Path) -> None:
    file = tmp_path / "data.bin"
    data = make_file(file, SIZE)
    state_file = tmp_path / "uploads.json"
    with proxy_to(server.port, rate=RATE) as proxy:
        endpoint = proxy.origin + "/files/"
        args = ("--endpoint", endpoint, "--retries", "2", "--retry-delay", "0.05", "--no-progress")
        process = start_upload(file, state_file, *args)
        url = _upload_url(state_file)
        wait_until(lambda: _stored(server.upload_dir, url) >= MiB, 30, "1 MiB on the server")
        proxy.refusing = True
        proxy.drop()
        code, stdout, stderr = _finish(process)
        assert code == 1
        assert stdout == ""
        [message] = [line for line in stderr.splitlines() if line.startswith("tusd-py upload: error:")]
        assert message.startswith("tusd-py upload: error: gave up after 2 retries: ")
        assert [entry["upload_url"] for entry in state_entries(state_file)] == [url]

        proxy.refusing = False
        proxy.rate = None
        done = run_upload(file, state_file, *args)
        assert done.returncode == 0, done.stderr
        assert "resuming" in done.stderr
        assert parse_output(done.stdout)["upload_url"] == url
        assert download(url) == data
