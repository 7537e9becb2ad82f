"""Upload one big file to a bare `tusd-py serve` over loopback; print one JSON line per run.

Each run starts a fresh server (FileStore on local disk, a temporary directory) on a
free port, creates one upload and sends it either as PATCHes of --patch-size bytes or as
one single PATCH. The client writes one preallocated buffer again and again through
memoryview slices on a raw non-blocking socket, so its own cost stays small and
constant. Measured: throughput, the server's peak RSS (psutil every 50 ms, and the
kernel's VmHWM read before the server stops), server and client CPU time.

    python benchmarks/big_upload.py                      # 1 GiB, 64 MiB PATCHes and one PATCH
    python benchmarks/big_upload.py --size 200M --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

MiB = 1024 * 1024
BUFFER_BYTES = 4 * MiB


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once something listens on `port`; raise if `process` (the server) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def vm_hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


class PeakRss:
    """Polls the RSS of some processes every `interval` seconds in a thread and keeps each one's peak."""

    def __init__(self, pids: dict[str, int], interval: float = 0.05) -> None:
        self.processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.peak = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mib(self) -> dict[str, float]:
        return {name: round(rss / MiB, 1) for name, rss in self.peak.items()}


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    upload_dir: Path


@contextlib.contextmanager
def running_server(upload_dir: Path, cpu: int | None) -> Iterator[Server]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tusd_py.cli",
        "serve",
        "--no-assets",
        "--port",
        str(port),
        "--upload-dir",
        str(upload_dir),
    ]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUSD_")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        if cpu is not None:
            os.sched_setaffinity(process.pid, {cpu})
        yield Server(process, port, upload_dir)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Client:
    """HTTP/1.1 over one raw non-blocking socket driven by the event loop."""

    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock = sock
        self.port = port
        self.loop = asyncio.get_running_loop()
        self._pending = b""

    @classmethod
    async def connect(cls, port: int) -> Client:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock, port)

    async def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Tus-Resumable: 1.0.0"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await self.loop.sock_sendall(self.sock, ("\r\n".join(lines) + "\r\n\r\n").encode())

    async def send_repeated(self, buffer: memoryview, count: int) -> None:
        """Send `count` bytes taken cyclically from `buffer`, without copying it."""
        while count:
            n = min(count, len(buffer))
            await self.loop.sock_sendall(self.sock, buffer[:n])
            count -= n

    async def reply(self) -> tuple[int, dict[str, str]]:
        data = self._pending
        while b"\r\n\r\n" not in data:
            more = await self.loop.sock_recv(self.sock, 65536)
            if not more:
                raise ConnectionError("server closed the connection")
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += await self.loop.sock_recv(self.sock, 65536)
        self._pending = rest[length:]
        return int(status_line.split()[1]), headers


async def upload(port: int, size: int, patch_size: int, buffer: memoryview) -> None:
    client = await Client.connect(port)
    try:
        await client.send_head("POST", "/files/", {"Upload-Length": str(size), "Content-Length": "0"})
        status, headers = await client.reply()
        if status != 201:
            raise RuntimeError(f"POST answered {status}")
        path = "/" + headers["location"].split("/", 3)[3]
        offset = 0
        while offset < size:
            n = min(patch_size, size - offset)
            await client.send_head(
                "PATCH",
                path,
                {
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                    "Content-Length": str(n),
                },
            )
            await client.send_repeated(buffer, n)
            status, headers = await client.reply()
            if status != 204 or int(headers["upload-offset"]) != offset + n:
                raise RuntimeError(f"PATCH at {offset} answered {status} {headers}")
            offset += n
    finally:
        client.sock.close()


def check_stored(upload_dir: Path, size: int, buffer: bytes) -> None:
    """The data file has the right size and its first and last blocks hold the sent bytes."""
    data_files = [p for p in upload_dir.iterdir() if p.is_file() and "." not in p.name]
    if len(data_files) != 1 or data_files[0].stat().st_size != size:
        raise RuntimeError(f"expected one data file of {size} bytes, found {data_files}")
    with data_files[0].open("rb") as stored:
        if stored.read(len(buffer)) != buffer[: min(size, len(buffer))]:
            raise RuntimeError("the first block differs from what was sent")
        last = (size - 1) // len(buffer) * len(buffer)
        stored.seek(last)
        if stored.read() != buffer[: size - last]:
            raise RuntimeError("the last block differs from what was sent")


def run_once(size: int, patch_size: int, mode: str, base_dir: Path | None, buffer: bytes) -> dict[str, object]:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    previous_affinity = os.sched_getaffinity(0)
    upload_dir = Path(tempfile.mkdtemp(prefix="tusd-bench-", dir=base_dir))
    try:
        with running_server(upload_dir, server_cpu) as server:
            if client_cpu is not None:
                os.sched_setaffinity(0, {client_cpu})
            process = psutil.Process(server.process.pid)
            rss_before = process.memory_info().rss
            server_cpu_before = sum(process.cpu_times()[:2])
            with PeakRss({"server": server.process.pid}) as sampler:
                client_cpu_before = time.thread_time()
                started = time.perf_counter()
                asyncio.run(upload(server.port, size, patch_size, memoryview(buffer)))
                seconds = time.perf_counter() - started
                client_cpu_seconds = time.thread_time() - client_cpu_before
            server_cpu_seconds = sum(process.cpu_times()[:2]) - server_cpu_before
            hwm = vm_hwm_bytes(server.process.pid)
            check_stored(upload_dir, size, buffer)
    finally:
        os.sched_setaffinity(0, previous_affinity)
        shutil.rmtree(upload_dir, ignore_errors=True)
    return {
        "mode": mode,
        "size_mib": round(size / MiB, 1),
        "patch_mib": round(patch_size / MiB, 1),
        "seconds": round(seconds, 3),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "server_rss_idle_mib": round(rss_before / MiB, 1),
        "server_peak_rss_mib": sampler.mib()["server"],
        "server_vmhwm_mib": round(hwm / MiB, 1),
        "server_cpu_s": round(server_cpu_seconds, 2),
        "client_cpu_s": round(client_cpu_seconds, 2),
        "pinned": client_cpu is not None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024 * MiB, help="upload size, e.g. 1G, 200M")
    parser.add_argument("--patch-size", type=parse_size, default=64 * MiB, help="bytes per PATCH in chunked mode")
    parser.add_argument("--mode", choices=["chunked", "single", "both"], default="both")
    parser.add_argument("--runs", type=int, default=1, help="runs per mode")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temporary upload directory")
    args = parser.parse_args()

    buffer = os.urandom(BUFFER_BYTES)
    modes = ["chunked", "single"] if args.mode == "both" else [args.mode]
    for _ in range(args.runs):
        for mode in modes:
            patch_size = args.patch_size if mode == "chunked" else args.size
            print(json.dumps(run_once(args.size, patch_size, mode, args.dir, buffer)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
