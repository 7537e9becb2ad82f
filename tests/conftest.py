"""Real servers on free loopback ports, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

# Session fixtures that start Redis, PostgreSQL and a Ceph S3 gateway when a test asks for one.
pytest_plugins = ["services.redis_server", "services.postgres_server", "services.ceph_rgw"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@dataclass
class RunningServer:
    """A `tusd-py serve` process. `endpoint` is the creation URL (base path included)."""

    process: subprocess.Popen[bytes]
    port: int
    upload_dir: Path
    base_path: str = "/files/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.origin + self.base_path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_server(upload_dir: Path, *flags: str, port: int | None = None) -> RunningServer:
    """Start `tusd-py serve` with `flags` on a free port and wait until it listens.

    A bare tus server unless `--assets` is among the flags: the tus layer's tests need
    no API keys.
    """
    port = port or free_port()
    if "--assets" not in flags:
        flags = ("--no-assets", *flags)
    base_path = "/files/"
    if "--base-path" in flags:
        base_path = flags[flags.index("--base-path") + 1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tusd_py.cli", "serve", "--port", str(port), "--upload-dir", str(upload_dir), *flags],
        env=env,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return RunningServer(process, port, upload_dir, base_path)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Call with extra `tusd-py serve` flags; every server started is stopped after the test."""
    started: list[RunningServer] = []

    def factory(*flags: str, upload_dir: Path | None = None) -> RunningServer:
        server = start_server(upload_dir or tmp_path / "data", *flags)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: object) -> RunningServer:
    """A `tusd-py serve` with default settings on a free port."""
    return server_factory()  # type: ignore[operator, no-any-return]


@contextlib.contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yields its origin URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
