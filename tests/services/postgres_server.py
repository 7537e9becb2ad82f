"""A real PostgreSQL for the tests: Debian's server binaries run on a free loopback port in a
temp dir, tuned for speed (no fsync), trust authentication on loopback only.

PostgreSQL refuses to run as root; as root (CI) the cluster belongs to the unprivileged
`postgres` user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROLE = "tusd"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Durability is worthless for a throw-away test cluster; these make it start and commit fast.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "300",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "1h",
    "autovacuum": "off",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> Path:
    """The newest installed server's binaries: Debian's versioned dirs, pg_config, then PATH."""
    versioned = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "initdb").is_file() and candidate.parent.name.isdigit():
            versioned.append((int(candidate.parent.name), candidate))
    if versioned:
        return max(versioned)[1]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
        bindir = Path(done.stdout.strip())
        if done.returncode == 0 and (bindir / "initdb").is_file():
            return bindir
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).parent
    pytest.fail(
        "PostgreSQL is not installed: no initdb under /usr/lib/postgresql/*/bin, from pg_config or on PATH "
        "(Debian: apt-get install postgresql)",
        pytrace=False,
    )


def server_user() -> pwd.struct_passwd | None:
    """The user to run the server as: None for the current one, `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            "PostgreSQL does not run as root and there is no 'postgres' user to run it as "
            "(Debian's postgresql package creates it)",
            pytrace=False,
        )


class PostgresServer:
    """One cluster, one superuser role (`ROLE`), a fresh database per `create_database()`."""

    def __init__(self, bindir: Path, directory: Path, user: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.directory = directory
        self.user = user
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._databases = 0
        self._maker = ThreadPoolExecutor(1)
        self._next: Future[str] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def url(self, dbname: str) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, **self._as_user(), env=self._env()
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def _as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if self.user is not None:
            env["HOME"] = self.user.pw_dir
        return env

    def init(self) -> None:
        if self.user is not None:
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            *("-D", str(self.data_dir), "-U", ROLE, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"),
        )

    def start(self) -> None:
        """Start on a free port; another process may take the port first, so try a few."""
        for _attempt in range(3):
            self.port = free_port()
            if self._start_on_port():
                return
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")

    def _start_on_port(self) -> bool:
        settings = [arg for name, value in SETTINGS.items() for arg in ("-c", f"{name}={value}")]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), *settings],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                **self._as_user(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE],
                timeout=10,
                check=False,
                env=self._env(),
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not accept connections within {START_TIMEOUT} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return "(no log)"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        done = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql, self.url(dbname)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=self._env(),
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {done.stderr}")
        return done.stdout

    def create_database(self) -> str:
        """A new empty database; returns its URL. The next one is made while the caller
        uses this one: CREATE DATABASE copies a template and takes a few hundred ms."""
        name = self._next.result() if self._next is not None else self._create_database()
        self._next = self._maker.submit(self._create_database)
        return self.url(name)

    def _create_database(self) -> str:
        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def stop(self) -> None:
        """An immediate shutdown (SIGQUIT: no checkpoint, the cluster is thrown away), then
        SIGKILL if it hangs."""
        self._maker.shutdown(wait=True, cancel_futures=True)
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    user = server_user()
    # Not under pytest's tmp dir: that one is private to the current user (root in CI).
    directory = Path(tempfile.mkdtemp(prefix="tusd-postgres-"))
    server = PostgresServer(bindir, directory, user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
