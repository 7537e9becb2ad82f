"""Benchmark tusd-py side by side with the peers, from one command.

    python benchmarks/run.py                      # full run: every server x scenario, 3 rounds, ~15-20 min
    python benchmarks/run.py --quick              # small sizes, one round: a smoke test of the harness
    python benchmarks/run.py --servers tusd-py,tus-node --scenarios big,small --runs 2
    python benchmarks/run.py --report-only benchmarks/results/<timestamp>.jsonl

Writes benchmarks/results/<timestamp>.jsonl (one JSON line per measurement), the table
between the markers in benchmarks/README.md, and benchmarks/results/latest.png.
See benchmarks/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadclient
import psutil
import report
import servers
from loadclient import Body, MiB, Target

HERE = Path(__file__).resolve().parent
SCENARIOS = ("limits", "big", "many", "small", "resume")
SERVERS = ("tusd-py", "tus-node", "tuspyserver", "litestar-tus", "tusd-py-assets")


@dataclass(frozen=True)
class Sizes:
    big: int
    big_patch: int
    many_count: int
    many_size: int
    small_connections: int
    small_seconds: float
    resume: int
    loopback: int
    disk: int


FULL = Sizes(1024 * MiB, 64 * MiB, 200, 4 * MiB, 64, 10.0, 256 * MiB, 4096 * MiB, 1024 * MiB)
QUICK = Sizes(64 * MiB, 16 * MiB, 20, 1 * MiB, 8, 2.0, 16 * MiB, 512 * MiB, 64 * MiB)


def run_async(coro: Coroutine[Any, Any, dict[str, object]]) -> tuple[dict[str, object], float]:
    """Run the client coroutine on a fresh loop; return its result and the client's CPU time."""
    # The stock loop, not uvloop: its sock_sendall of large memoryviews measured faster here.
    cpu = time.thread_time()
    result = asyncio.run(coro)
    return result, time.thread_time() - cpu


def data_files(upload_dir: Path, size: int) -> list[Path]:
    return [p for p in upload_dir.rglob("*") if p.is_file() and p.stat().st_size == size]


def check_sampled(upload_dir: Path, body: Body, size: int) -> None:
    """One stored file has the upload's size, and its first, last and some random blocks match."""
    found = data_files(upload_dir, size)
    if len(found) != 1:
        raise RuntimeError(f"expected one stored file of {size} bytes, found {len(found)}")
    block = 1 * MiB
    starts = {0, max(0, size - block), *(random.randrange(0, max(1, size - block)) for _ in range(4))}
    with found[0].open("rb") as stored:
        for start in sorted(starts):
            stored.seek(start)
            end = min(size, start + block)
            if stored.read(end - start) != body.expected(start, end):
                raise RuntimeError(f"stored bytes at {start} differ from what was sent")


def check_all(upload_dir: Path, body: Body, size: int) -> None:
    found = data_files(upload_dir, size)
    if len(found) != 1:
        raise RuntimeError(f"expected one stored file of {size} bytes, found {len(found)}")
    with found[0].open("rb") as stored:
        for start in range(0, size, 4 * MiB):
            end = min(size, start + 4 * MiB)
            if stored.read(end - start) != body.expected(start, end):
                raise RuntimeError(f"stored bytes at {start} differ from what was sent")


class Harness:
    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.out = out
        self.buffer = os.urandom(4 * MiB)
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpu: int | None = cpus[0] if len(cpus) >= 2 else None
        self.client_cpu: int | None = cpus[1] if len(cpus) >= 2 else None
        if self.client_cpu is not None:
            os.sched_setaffinity(0, {self.client_cpu})
        self.kinds = servers.server_kinds()
        self.run_id = out.stem

    def emit(self, record: dict[str, object]) -> None:
        record = {"run_id": self.run_id, **record, "loadavg_1m": os.getloadavg()[0]}
        line = json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()})
        with self.out.open("a") as f:
            f.write(line + "\n")
        if record.get("kind") == "meta":
            return
        short = {k: v for k, v in record.items() if k in ("server", "scenario", "round", "ok", "error")}
        metric = next((record[k] for k in ("mb_per_s", "creates_per_s", "kept_fraction") if k in record), None)
        print(json.dumps({**short, "metric": round(metric, 1) if isinstance(metric, float) else metric}), flush=True)

    def temp_dir(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"tusd-bench-{prefix}-", dir=self.args.dir))

    # --- limits ---

    def loopback_limit(self, round_no: int, store: bool = False) -> None:
        """One stream into a blocking sink on the server's core; with `store`, the sink also
        writes what it receives to a new file: the least any server has to do for `big`."""
        size = self.sizes.loopback if not store else self.sizes.big
        where = self.temp_dir("sink") if store else None
        command = [sys.executable, str(Path(__file__).resolve()), "--sink", str(size)]
        if where is not None:
            command += ["--sink-store", str(where / "upload")]
        if self.server_cpu is not None:
            command = ["taskset", "-c", str(self.server_cpu), *command]
        sink = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            assert sink.stdout is not None
            port = int(sink.stdout.readline())
            sink_ps = psutil.Process(sink.pid)
            cpu_before = servers.tree_cpu(sink_ps)
            result, client_cpu = run_async(loadclient.loopback(port, Body(self.buffer), size))
            server_cpu = servers.tree_cpu(sink_ps) - cpu_before
            sink.wait(30)
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.wait()
            if where is not None:
                shutil.rmtree(where, ignore_errors=True)
        self.emit(
            {
                "round": round_no,
                "server": "limit",
                "scenario": "store" if store else "loopback",
                "ok": True,
                **result,
                "server_cpu_s": server_cpu,
                "client_cpu_s": client_cpu,
            }
        )

    def disk_limit(self, round_no: int) -> None:
        where = self.temp_dir("disk")
        path = where / "write"
        size = self.sizes.disk
        view = memoryview(self.buffer)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                started = time.perf_counter()
                written = 0
                while written < size:
                    written += os.write(fd, view[: min(len(view), size - written)])
                os.fsync(fd)
                seconds = time.perf_counter() - started
            finally:
                os.close(fd)
        finally:
            shutil.rmtree(where, ignore_errors=True)
        self.emit(
            {
                "round": round_no,
                "server": "limit",
                "scenario": "disk",
                "ok": True,
                "bytes": size,
                "seconds": seconds,
                "mb_per_s": size / seconds / 1e6,
            }
        )

    # --- tus scenarios ---

    def measure(
        self,
        round_no: int,
        kind: servers.ServerKind,
        scenario: str,
        size_hint: int,
        client: Callable[[Target, Body], Coroutine[Any, Any, dict[str, object]]],
        verify: Callable[[Path, Body, dict[str, object]], None] | None = None,
    ) -> None:
        base: dict[str, object] = {"round": round_no, "server": kind.name, "scenario": scenario}
        kind.ensure_installed()
        if kind.error:
            self.emit({**base, "ok": False, "error": f"unavailable: {kind.error}"})
            return
        # The bytes the last measurement left dirty are written out first: otherwise their
        # writeback, and the journal commits that wait for it, slow whoever comes next.
        os.sync()
        upload_dir = self.temp_dir(kind.name) / "uploads"
        upload_dir.mkdir()
        try:
            with servers.running(kind, upload_dir, self.server_cpu, size_hint) as server:
                body = Body(self.buffer, server.prepared.body_prefix)
                ps = server.ps
                idle_rss = servers.tree_rss(ps)
                cpu_before = servers.tree_cpu(ps)
                error = None
                with servers.RssSampler(ps) as sampler:
                    try:
                        result, client_cpu = run_async(client(server.prepared.target, body))
                    except (loadclient.HttpError, OSError, ValueError, KeyError) as failure:
                        result, client_cpu = {}, 0.0
                        error = f"{type(failure).__name__}: {failure} | server log: {server.log_tail()[-300:]}"
                server_cpu = servers.tree_cpu(ps) - cpu_before
                hwm = servers.vm_hwm(ps.pid)
                if error is None and verify is not None:
                    try:
                        verify(upload_dir, body, result)
                        result["verified"] = True
                    except (RuntimeError, OSError) as failure:
                        error = f"verification: {failure}"
                self.emit(
                    {
                        **base,
                        "ok": error is None,
                        **({"error": error} if error else {}),
                        **result,
                        "server_cpu_s": server_cpu,
                        "client_cpu_s": client_cpu,
                        "server_idle_rss_mib": idle_rss / MiB,
                        "server_peak_rss_mib": sampler.peak / MiB,
                        "server_vmhwm_mib": (hwm or 0) / MiB,
                        "pinned": self.server_cpu is not None,
                    }
                )
        except servers.Unavailable as failure:
            self.emit({**base, "ok": False, "error": str(failure)})
        finally:
            shutil.rmtree(upload_dir.parent, ignore_errors=True)

    def tus_scenarios(self, round_no: int, scenario: str, kind: servers.ServerKind) -> None:
        s = self.sizes
        if scenario == "big":
            for mode, patch in (("big-chunked", s.big_patch), ("big-single", s.big)):
                if kind.name == "tusd-py-assets" and mode != "big-single":
                    continue
                self.measure(
                    round_no,
                    kind,
                    mode,
                    s.big,
                    lambda t, b, p=patch: loadclient.big(t, b, s.big, p),  # type: ignore[misc]
                    lambda d, b, r: check_sampled(d, b, s.big),
                )
        elif kind.name == "tusd-py-assets":
            return
        elif scenario == "many":

            def count_files(d: Path, b: Body, r: dict[str, object]) -> None:
                if len(data_files(d, s.many_size)) < s.many_count:
                    raise RuntimeError(f"fewer than {s.many_count} stored files of {s.many_size} bytes")

            self.measure(
                round_no,
                kind,
                "many",
                s.many_size,
                lambda t, b: loadclient.many(t, b, s.many_count, s.many_size),
                count_files,
            )
        elif scenario == "small":
            self.measure(
                round_no, kind, "small", 1024, lambda t, b: loadclient.small(t, s.small_connections, s.small_seconds)
            )
        elif scenario == "resume":
            cut = s.resume // 2 + 12345
            self.measure(
                round_no,
                kind,
                "resume",
                s.resume,
                lambda t, b: loadclient.resume(t, b, s.resume, cut, settle_timeout=15),
                lambda d, b, r: check_all(d, b, s.resume),
            )

    def run(self) -> None:
        scenarios = [s for s in SCENARIOS if s in self.args.scenarios]
        kinds = [self.kinds[name] for name in self.args.servers]
        self.emit({"kind": "meta", **machine_info(self), "scenarios": scenarios, "servers": self.args.servers})
        started = time.monotonic()
        budget = self.args.budget_minutes * 60
        for round_no in range(1, self.args.runs + 1):
            round_started = time.monotonic()
            if "limits" in scenarios:
                os.sync()
                self.loopback_limit(round_no)
                self.disk_limit(round_no)
                self.loopback_limit(round_no, store=True)
            for scenario in scenarios:
                if scenario == "limits":
                    continue
                # Servers take turns within each scenario, so slow drifts of the machine hit all
                # alike, and the first turn moves round by round: the server measured right after
                # the limits or another scenario is not always the same one.
                turn = (round_no - 1) % len(kinds)
                for kind in kinds[turn:] + kinds[:turn]:
                    self.tus_scenarios(round_no, scenario, kind)
            took = time.monotonic() - round_started
            left = budget - (time.monotonic() - started)
            if round_no < self.args.runs and left < took:
                print(
                    f"stopping after round {round_no}: another round ({took:.0f} s) would pass the budget", flush=True
                )
                break


def command_output(command: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=HERE)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def machine_info(harness: Harness) -> dict[str, object]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": command_output(["git", "rev-parse", "--short", "HEAD"]),
        "tree_dirty": bool(command_output(["git", "status", "--porcelain", "--", "../tusd_py"])),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "node": command_output(["node", "--version"]),
        "quick": harness.args.quick,
        "server_cpu": harness.server_cpu,
        "client_cpu": harness.client_cpu,
        "sizes": harness.sizes.__dict__,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and one round: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {SCENARIOS}")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated subset of {SERVERS}")
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temporary upload directories")
    parser.add_argument("--budget-minutes", type=float, default=20, help="start no round that would end past this")
    parser.add_argument("--no-report", action="store_true", help="write the JSON lines only")
    parser.add_argument("--report-only", type=Path, default=None, help="rebuild the table and chart from a .jsonl")
    parser.add_argument("--sink", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sink-store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.sink is not None:
        loadclient.sink(args.sink, args.sink_store)
        return 0
    if args.report_only is not None:
        report.publish(args.report_only)
        return 0

    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = (set(args.scenarios) - set(SCENARIOS)) | (set(args.servers) - set(SERVERS))
    if unknown:
        parser.error(f"unknown scenario or server: {', '.join(sorted(unknown))}")
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"{stamp}{'-quick' if args.quick else ''}.jsonl"
    Harness(args, out).run()
    print(f"results: {out}", flush=True)
    if not args.no_report:
        # A quick run is a smoke test: it prints its table but leaves the published one alone.
        report.publish(out, write=not args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
