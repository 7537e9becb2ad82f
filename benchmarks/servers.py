"""The servers under test: how each is installed, started, pinned, watched and stopped.

- `tusd-py`: `tusd-py serve --no-assets` from the current tree (bare tus).
- `tusd-py-assets`: `tusd-py serve` with the asset module on (an account, project and key
  are made with the CLI first; uploads carry the key and a WAV header).
- `tus-node`: @tus/server + @tus/file-store (versions pinned in peers/node/package.json),
  installed with npm into peers/node/node_modules.
- `tuspyserver`, `litestar-tus`: each in its own venv under benchmarks/.work/venvs/<name>,
  from peers/python/<name>-requirements.txt, served by uvicorn from peers/python/<name>_app.py.
  litestar-tus needs Python 3.13+: the harness looks for python3.13/3.14 on PATH, in
  pyenv's versions, or takes the interpreter named by BENCH_PYTHON313.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from loadclient import Target

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
WORK = HERE / ".work"
MiB = 1024 * 1024


class Unavailable(RuntimeError):
    """A server that cannot be installed or started here; the reason goes in the results."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_quiet(command: list[str], cwd: Path | None = None, timeout: float = 900) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise Unavailable(f"{' '.join(command[:3])} failed: {(result.stderr or result.stdout)[-600:]}")


def _stamp_ok(stamp: Path, content: str) -> bool:
    return stamp.exists() and stamp.read_text() == content


def install_node() -> None:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        raise Unavailable("node and npm are needed for @tus/server")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v")
    if tuple(int(p) for p in version.split(".")[:2]) < (20, 19):
        raise Unavailable(f"@tus/server needs node >= 20.19, found {version}")
    package = (PEERS / "node" / "package.json").read_text()
    stamp = PEERS / "node" / "node_modules" / ".bench-stamp"
    if _stamp_ok(stamp, package):
        return
    run_quiet(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS / "node")
    stamp.write_text(package)


def _is_313(python: str) -> bool:
    check = "import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([python, "-c", check], capture_output=True, timeout=20).returncode == 0
    return False


def python_313() -> str | None:
    """An interpreter of Python 3.13 or later, for litestar-tus."""
    candidates = [os.environ.get("BENCH_PYTHON313", "")]
    candidates += [shutil.which(name) or "" for name in ("python3.14", "python3.13")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
        if root:
            candidates += sorted(glob.glob(f"{root}/versions/3.1[3-9]*/bin/python3"), reverse=True)
    # A pyenv shim is on PATH even when its version is not selected, so each is tried.
    return next((c for c in candidates if c and _is_313(c)), None)


def install_venv(name: str, python: str | None) -> Path:
    if python is None:
        raise Unavailable(f"{name} needs Python 3.13+: none found (set BENCH_PYTHON313)")
    requirements = PEERS / "python" / f"{name}-requirements.txt"
    venv = WORK / "venvs" / name
    content = requirements.read_text()
    stamp = venv / ".bench-stamp"
    if _stamp_ok(stamp, content):
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    run_quiet([python, "-m", "venv", str(venv)])
    run_quiet([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)])
    stamp.write_text(content)
    return venv


@dataclass
class Prepared:
    """What a started server needs: its command line, environment, and what clients send."""

    command: list[str]
    env: dict[str, str]
    cwd: Path
    target: Target
    body_prefix: bytes = b""


def wav_header(total: int) -> bytes:
    """A 44-byte PCM WAV header (8 kHz mono 16-bit) for a file of `total` bytes."""
    data = total - 44
    return (
        b"RIFF"
        + (total - 8).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + (8000).to_bytes(4, "little")
        + (16000).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + data.to_bytes(4, "little")
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TUSD_", "BENCH_", "VIRTUAL_ENV"))}


def _tusd_cli(*args: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "tusd_py.cli", *args], capture_output=True, text=True, env=_clean_env(), timeout=60
    )
    if out.returncode != 0:
        raise Unavailable(f"tusd-py {args[0]} failed: {out.stderr[-400:]}")
    return dict(json.loads(out.stdout))


@dataclass
class ServerKind:
    name: str
    label: str
    install: Callable[[], None]
    prepare: Callable[[int, Path, int], Prepared]
    error: str | None = None
    installed: bool = False

    def ensure_installed(self) -> None:
        if self.installed or self.error:
            return
        try:
            self.install()
            self.installed = True
        except (Unavailable, OSError, subprocess.SubprocessError) as error:
            self.error = str(error)


# Every upload names its file and type, as Uppy does: tuspyserver answers HEAD with 400 without them.
FILE_METADATA = (("filename", "bench.bin"), ("filetype", "application/octet-stream"))


def _prepare_tusd(port: int, upload_dir: Path, size: int) -> Prepared:
    command = [sys.executable, "-m", "tusd_py.cli", "serve", "--no-assets", "--port", str(port)]
    command += ["--upload-dir", str(upload_dir)]
    return Prepared(command, _clean_env(), HERE, Target(port, "/files/", metadata=FILE_METADATA))


def _prepare_tusd_assets(port: int, upload_dir: Path, size: int) -> Prepared:
    where = ["--upload-dir", str(upload_dir)]
    account = _tusd_cli("accounts", "create", "bench", *where)
    project = _tusd_cli("projects", "create", "--account", account["id"], *where, "bench")
    key = _tusd_cli("keys", "create", "--account", account["id"], *where)
    command = [sys.executable, "-m", "tusd_py.cli", "serve", "--assets", "--port", str(port), *where]
    target = Target(
        port,
        "/files/",
        headers=(("Authorization", f"Bearer {key['key']}"),),
        metadata=(("project_id", project["id"]), *FILE_METADATA),
    )
    return Prepared(command, _clean_env(), HERE, target, body_prefix=wav_header(size))


def _prepare_node(port: int, upload_dir: Path, size: int) -> Prepared:
    node = shutil.which("node") or "node"
    return Prepared(
        [node, "server.mjs", str(port), str(upload_dir)], _clean_env(), PEERS / "node", Target(port, "/files")
    )


def _uvicorn(name: str, module: str, create_path: str) -> Callable[[int, Path, int], Prepared]:
    def prepare(port: int, upload_dir: Path, size: int) -> Prepared:
        python = str(WORK / "venvs" / name / "bin" / "python")
        command = [python, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port)]
        env = {**_clean_env(), "BENCH_UPLOAD_DIR": str(upload_dir)}
        return Prepared(command, env, PEERS / "python", Target(port, create_path, metadata=FILE_METADATA))

    return prepare


def _install_tuspyserver() -> None:
    install_venv("tuspyserver", sys.executable)


def _install_litestar_tus() -> None:
    install_venv("litestar-tus", python_313())


def server_kinds() -> dict[str, ServerKind]:
    kinds = [
        ServerKind("tusd-py", "tusd-py", lambda: None, _prepare_tusd),
        ServerKind("tus-node", "@tus/server", install_node, _prepare_node),
        ServerKind(
            "tuspyserver", "tuspyserver", _install_tuspyserver, _uvicorn("tuspyserver", "tuspyserver_app", "/files")
        ),
        ServerKind(
            "litestar-tus",
            "litestar-tus",
            _install_litestar_tus,
            _uvicorn("litestar-tus", "litestar_tus_app", "/files/"),
        ),
        ServerKind("tusd-py-assets", "tusd-py (assets)", lambda: None, _prepare_tusd_assets),
    ]
    return {kind.name: kind for kind in kinds}


def tree(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [process, *process.children(recursive=True)]
    return []


def tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in tree(process):
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in tree(process):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def vm_hwm(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


@dataclass
class RssSampler:
    """Polls the RSS of a process tree every 50 ms in a thread and keeps the peak."""

    process: psutil.Process
    interval: float = 0.05
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.process))
            self._stop.wait(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.process))


def _answers_http(port: int, path: str) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(f"OPTIONS {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\r\n".encode())
        return sock.recv(12).startswith(b"HTTP/1.1")
    return False


@dataclass
class Running:
    kind: ServerKind
    process: subprocess.Popen[bytes]
    prepared: Prepared
    upload_dir: Path
    log: Path

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-800:]
        return ""


@contextlib.contextmanager
def running(kind: ServerKind, upload_dir: Path, cpu: int | None, size: int, timeout: float = 60) -> Iterator[Running]:
    """Start `kind` on a free port, pinned to `cpu`, with its files in `upload_dir`."""
    port = free_port()
    prepared = kind.prepare(port, upload_dir, size)
    command = prepared.command
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    log = upload_dir.parent / f"{upload_dir.name}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=prepared.cwd,
            env=prepared.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Running(kind, process, prepared, upload_dir, log)
    try:
        deadline = time.monotonic() + timeout
        while not _answers_http(port, prepared.target.create_path):
            if process.poll() is not None:
                raise Unavailable(f"{kind.name} exited with {process.returncode}: {server.log_tail()}")
            if time.monotonic() > deadline:
                raise Unavailable(f"{kind.name} did not answer within {timeout:.0f} s: {server.log_tail()}")
            time.sleep(0.1)
        if cpu is not None:
            for p in tree(server.ps):
                with contextlib.suppress(psutil.Error):
                    p.cpu_affinity([cpu])
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.unlink(missing_ok=True)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()
