"""Running `tusd-py upload` as a user would: a separate process, its state file, its output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024


def make_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def _env(tmp_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_")}
    # Whatever a test forgets, the user's own cache directory is never touched.
    env["XDG_CACHE_HOME"] = str(tmp_cache)
    return env


def upload_command(file: Path, state_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tusd_py.cli", "upload", str(file), "--state-file", str(state_file), *args]


def run_upload(file: Path, state_file: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        upload_command(file, state_file, *args),
        env=_env(state_file.parent / "cache"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _default_sigint() -> None:
    # A process started from a non-interactive shell's background job inherits SIGINT
    # ignored, and Python then keeps it ignored: the test must act like a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_upload(file: Path, state_file: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        upload_command(file, state_file, *args),
        env=_env(state_file.parent / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def parse_output(stdout: str) -> dict[str, str]:
    """The `name: value` lines the command prints on success."""
    result = {}
    for line in stdout.splitlines():
        name, _, value = line.partition(": ")
        result[name] = value
    return result


def state_entries(state_file: Path) -> list[dict[str, Any]]:
    if not state_file.exists():
        return []
    uploads: dict[str, dict[str, Any]] = json.loads(state_file.read_text())["uploads"]
    return list(uploads.values())


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stored_size(upload_dir: Path, url: str) -> int:
    """The server's offset, read from its data file: a HEAD would take the upload's lock
    and end the client's PATCH in flight."""
    path = upload_dir / url.rstrip("/").rsplit("/", 1)[-1]
    return path.stat().st_size if path.exists() else 0


def head(url: str) -> httpx.Response:
    return httpx.head(url, headers=TUS, timeout=10)


def download(url: str) -> bytes:
    response = httpx.get(url, headers=TUS, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


def interrupt_midway(
    process: subprocess.Popen[str], state_file: Path, upload_dir: Path, at_least: int, timeout: float = 30
) -> tuple[int, str, str]:
    """SIGINT the upload once the server has `at_least` bytes; (exit code, stderr, upload URL)."""
    url = ""

    def far_enough() -> bool:
        nonlocal url
        assert process.poll() is None, f"the upload ended early: {process.communicate()}"
        entries = state_entries(state_file)
        if not entries:
            return False
        url = entries[0]["upload_url"]
        return stored_size(upload_dir, url) >= at_least

    try:
        wait_until(far_enough, timeout, f"{at_least} bytes on the server")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr, url


def assets_helpers() -> Any:
    """tests/integration/assets_helpers.py: the asset platform the integration tests use."""
    integration = str(Path(__file__).resolve().parent.parent / "integration")
    if integration not in sys.path:
        sys.path.insert(0, integration)
    import assets_helpers as module

    return module
