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
from typing import IO, Any

import pytest
import uvicorn
from starlette.types import ASGIApp

# Session fixtures that start Redis, PostgreSQL, a Ceph S3 gateway or Chromium when a test asks for one.
pytest_plugins = ["services.redis_server", "services.postgres_server", "services.ceph_rgw", "web.browser"]


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
    store: StoreBackend
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


def start_server(
    upload_dir: Path,
    *flags: str,
    port: int | None = None,
    backend: StoreBackend | None = None,
    output: IO[bytes] | None = None,
) -> RunningServer:
    """Start `tusd-py serve` with `flags` on a free port and wait until it listens.

    A bare tus server unless `--assets` is among the flags: the tus layer's tests need
    no API keys. Uploads go to `backend` (the upload dir's files by default); the
    server's stdout and stderr to `output` (the test's own by default).
    """
    port = port or free_port()
    backend = backend or FileBackend(upload_dir)
    if "--assets" not in flags:
        flags = ("--no-assets", *flags)
    base_path = "/files/"
    if "--base-path" in flags:
        base_path = flags[flags.index("--base-path") + 1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_")}
    env.update(backend.env())
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tusd_py.cli",
            "serve",
            "--port",
            str(port),
            "--upload-dir",
            str(upload_dir),
            *backend.flags(),
            *flags,
        ],
        env=env,
        stdout=output,
        stderr=output,
    )
    try:
        wait_for_port(port)
    except TimeoutError:
        process.kill()
        raise
    return RunningServer(process, port, upload_dir, backend, base_path)


# -- where a server keeps uploads, as the tests see it --------------------------------------

STORES = ("file", "s3")


class FileBackend:
    """Uploads as files in the server's upload dir: `<id>` holds the bytes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def flags(self) -> tuple[str, ...]:
        return ()

    def env(self) -> dict[str, str]:
        return {}

    def names(self) -> list[str]:
        """Every name the store wrote (files beside the uploads, like the outbox, left out)."""
        if not self.directory.exists():
            return []
        return sorted(p.name for p in self.directory.iterdir() if p.is_file() and not p.name.startswith("."))

    def read(self, upload_id: str) -> bytes:
        """The stored bytes of a finished upload."""
        return (self.directory / upload_id).read_bytes()


class S3Backend:
    """Uploads as objects in a bucket of its own on the test session's Ceph gateway."""

    def __init__(self, rgw: Any) -> None:
        self.rgw = rgw
        self.bucket: str = rgw.new_bucket("tus")

    def flags(self) -> tuple[str, ...]:
        return ("--s3-bucket", self.bucket, "--s3-endpoint", self.rgw.endpoint, "--s3-path-style")

    def env(self) -> dict[str, str]:
        return dict(self.rgw.env())

    def names(self) -> list[str]:
        """Objects, and multipart uploads not completed (which hold bytes too)."""
        client = self.rgw.client()
        names: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            names.extend(item["Key"] for item in page.get("Contents", []))
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
            names.extend(f"{upload['Key']} (multipart upload)" for upload in page.get("Uploads", []))
        return sorted(names)

    def read(self, upload_id: str) -> bytes:
        return bytes(self.rgw.client().get_object(Bucket=self.bucket, Key=upload_id)["Body"].read())


StoreBackend = FileBackend | S3Backend


def store_backend(request: pytest.FixtureRequest, kind: str, directory: Path) -> StoreBackend:
    if kind == "s3":
        return S3Backend(request.getfixturevalue("ceph_s3"))
    return FileBackend(directory)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "all_stores: run once per store (local files and S3)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tus_store" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_stores"):
        metafunc.parametrize("tus_store", STORES, indirect=True)


@pytest.fixture
def tus_store(request: pytest.FixtureRequest) -> str:
    """The store `server_factory` starts servers on: "file" unless the test is marked all_stores."""
    return str(getattr(request, "param", "file"))


@pytest.fixture
def server_factory(tmp_path: Path, tus_store: str, request: pytest.FixtureRequest) -> Iterator[object]:
    """Call with extra `tusd-py serve` flags; every server started is stopped after the test.

    Servers of one test share one store: with S3, one bucket (like instances behind a balancer).
    """
    started: list[RunningServer] = []
    backends: dict[Path, StoreBackend] = {}

    def factory(*flags: str, upload_dir: Path | None = None) -> RunningServer:
        directory = upload_dir or tmp_path / "data"
        if tus_store == "file":
            backend = backends.setdefault(directory, FileBackend(directory))
        else:
            backend = backends.setdefault(Path("s3"), store_backend(request, tus_store, directory))
        server = start_server(directory, *flags, backend=backend)
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
