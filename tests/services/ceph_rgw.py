"""Ceph's S3 gateway (radosgw) on a throwaway one-monitor, one-OSD cluster, for the tests.

Everything lives in one work directory: ceph.conf, mon and OSD data, run dir (admin
sockets), logs. No systemd, no ceph-mgr (nothing here needs it), no keyrings
(auth is off), no root required. Ceph 16 has no standalone gateway, hence the cluster.

    with start_rgw(workdir) as rgw:          # or: rgw = start_rgw(workdir); ...; rgw.stop()
        bucket = rgw.new_bucket()
        subprocess.run([...], env={**os.environ, **rgw.env()})

    python tests/services/ceph_rgw.py [WORKDIR]     # one in the foreground, until Ctrl-C

The OSD keeps its objects in BlueStore on a sparse file (`osd/ceph-0/block`), not in
memstore: memstore holds every byte ever written in the OSD's memory and stalls writes
once its configured size is reached, whereas the tests and the benchmark may write
gigabytes and never delete them. BlueStore's memory stays bounded by its small cache.
Start costs ~2 s more (mkfs of the block file); `start_rgw(..., objectstore="memstore")`
is there for comparison.

Addressing: path-style works on any endpoint. `rgw_dns_name` is `localhost`, so a request
to 127.0.0.1 carrying `Host: <bucket>.localhost:<port>` is virtual-host style; clients
that build that host name themselves need `<bucket>.localhost` to resolve to loopback.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import pytest

REGION = "us-east-1"  # boto3 sends no LocationConstraint for it, which the default zonegroup accepts
ACCESS_KEY = "TUSDPYTESTACCESSKEY0"
SECRET_KEY = "tusd-py-test-secret-key-for-the-ceph-gateway"
DAEMON_BINARIES = ("ceph-mon", "ceph-osd", "radosgw")
TOOL_BINARIES = ("monmaptool", "ceph", "radosgw-admin")
ObjectStore = Literal["bluestore", "memstore"]

# Created up front in one client session: left to radosgw, each pool is created on the first
# request that needs it, one monitor round trip at a time.
RGW_POOLS = {
    ".rgw.root": 4,
    "default.rgw.control": 4,
    "default.rgw.meta": 4,
    "default.rgw.log": 4,
    "default.rgw.buckets.index": 8,
    "default.rgw.buckets.non-ec": 4,
    "default.rgw.buckets.data": 16,
}


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever http_proxy says


class RGWStartError(RuntimeError):
    """A daemon or an admin command failed while the cluster was starting."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_binaries() -> list[str]:
    return [name for name in (*DAEMON_BINARIES, *TOOL_BINARIES) if shutil.which(name) is None]


def tail(text: str, lines: int) -> str:
    return "\n".join(line for line in text.splitlines()[-lines:] if line.strip())


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return tail(path.read_text(errors="replace"), lines)
    except OSError as error:
        return f"(no log: {error})"


def ceph_conf(workdir: Path, fsid: str, mon_port: int, rgw_port: int, objectstore: ObjectStore) -> str:
    """A ceph.conf that keeps every file of the cluster inside `workdir`."""
    log = workdir / "log"
    run = workdir / "run"
    return f"""\
[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{mon_port}]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# with auth off, the default "secure" messenger mode makes radosgw hang while connecting
ms_mon_client_mode = crc
ms_client_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
ms_cluster_mode = crc
ms_service_mode = crc
keyring = {workdir}/keyring
run_dir = {run}
crash_dir = {workdir}/crash
log_file = {log}/$cluster-$name.log
mon_cluster_log_file = default={log}/$cluster.$channel.log cluster={log}/$cluster.log
mon_data = {workdir}/mon/$cluster-$id
osd_data = {workdir}/osd/$cluster-$id
rgw_data = {workdir}/rgw/$cluster-$id
# one OSD: one copy of everything, placed on any OSD
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
osd_crush_chooseleaf_type = 0
# a monitor commits each change after paxos_propose_interval (1 s by default)
paxos_propose_interval = 0.01
paxos_min_wait = 0.01
# a nearly full host disk must not stop the monitor
mon_data_avail_crit = 0
mon_data_avail_warn = 0
# small memory targets and thread counts: a test cluster next to other processes
mon_memory_target = 256M
rocksdb_cache_size = 32M
ms_async_op_threads = 2

[osd]
osd_objectstore = {objectstore}
osd_memory_target = 512M
osd_memory_cache_min = 64M
bluestore_cache_autotune = false
bluestore_cache_size = 128M
bluestore_block_create = true
# sparse: disk is used as data is written
bluestore_block_size = 32G
bluestore_fsck_on_mkfs = false
bluestore_fsck_on_mount = false
memstore_device_bytes = 16G
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 2

[client]
# radosgw starts while the OSD boots: without this it notices the OSD up only 5 s later
objecter_tick_interval = 0.2
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw_dns_name = localhost
# 512 threads by default, for a test gateway on a few cores
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
# deleted and aborted data is freed on disk within minutes, not hours
rgw_gc_obj_min_wait = 60
rgw_gc_processor_period = 60

[client.admin]
# the ceph and radosgw-admin commands: no admin socket, a shared log
admin_socket =
"""


@dataclass
class RGW:
    """A running radosgw and its cluster; an S3 user with fixed keys exists."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    workdir: Path
    daemons: dict[str, subprocess.Popen[bytes]]
    started_in: float
    _s3: Any = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """AWS variables for a subprocess that talks to this gateway (endpoint not included)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this gateway (path-style)."""
        if self._s3 is None:
            import boto3  # the plugin module is imported by every test session; boto3 only when used
            from botocore.config import Config

            self._s3 = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
            )
        return self._s3

    def new_bucket(self, prefix: str = "t") -> str:
        """Create a bucket with a fresh lowercase, DNS-safe name starting with `prefix`."""
        name = f"{prefix}-{uuid.uuid4().hex[:20]}".lower()
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        """SIGKILL every daemon and wait for it: the cluster is thrown away, nothing to flush."""
        for process in self.daemons.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.daemons.values():
            process.wait(30)

    def __enter__(self) -> RGW:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Starter:
    """The start sequence; on failure it kills what it started and says which log to read."""

    def __init__(self, workdir: Path, objectstore: ObjectStore, timeout: float) -> None:
        self.workdir = workdir
        self.objectstore = objectstore
        self.deadline = time.monotonic() + timeout
        self.conf = workdir / "ceph.conf"
        self.log = workdir / "log"
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.fail("timed out starting the cluster", self.log / "ceph-mon.a.log")
        return left

    def fail(self, message: str, log: Path) -> NoReturn:
        self.kill_all()
        raise RGWStartError(f"{message}\n--- tail of {log}:\n{log_tail(log)}")

    def kill_all(self) -> None:
        for process in self.daemons.values():
            if process.poll() is None:
                process.kill()
            process.wait(30)

    def run(self, *command: str, log: Path) -> None:
        with self.background(*command, log=log):
            pass

    @contextlib.contextmanager
    def background(self, *command: str, stdin: str = "", log: Path) -> Iterator[None]:
        """Run `command` while the body runs; then wait for it and fail (with `log`) if it failed."""
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT)
            try:
                assert process.stdin is not None
                process.stdin.write(stdin.encode())  # a few lines: fits in the pipe, never blocks
                process.stdin.close()
                yield
                try:
                    code = process.wait(self.remaining())
                except subprocess.TimeoutExpired:
                    self.fail(f"{' '.join(command)} timed out", log)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            output.seek(0)
            text = output.read().decode(errors="replace")
            # `ceph` reading commands from stdin reports a failed one only in its output
            if code != 0 or re.search(r"^Error E", text, re.MULTILINE):
                self.fail(f"{' '.join(command)} exited {code}:\n{tail(text, 20)}", log)

    def spawn(self, name: str, *command: str) -> None:
        with (self.log / f"{name}.out").open("wb") as out:
            # a session of its own: Ctrl-C in a terminal reaches the test process, which kills the daemons
            self.daemons[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )

    def check_alive(self, name: str, log: Path) -> None:
        code = self.daemons[name].poll()
        if code is not None:
            self.fail(f"{name} exited with {code} (stdout/stderr: {log_tail(self.log / f'{name}.out', 10)})", log)

    def wait_for_port(self, name: str, port: int, log: Path) -> None:
        while True:
            self.check_alive(name, log)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
            if time.monotonic() > self.deadline:
                self.fail(f"{name} does not listen on port {port}", log)
            time.sleep(0.05)

    def wait_for_http(self, name: str, url: str, log: Path) -> None:
        while True:
            self.check_alive(name, log)
            timeout = max(0.1, min(5.0, self.remaining()))
            with contextlib.suppress(OSError, urllib.error.URLError), NO_PROXY.open(url, timeout=timeout) as reply:
                if reply.status == 200:
                    return
            if time.monotonic() > self.deadline:
                self.fail(f"{name} does not answer {url}", log)
            time.sleep(0.05)

    def start(self) -> RGW:
        try:
            return self._start()
        except BaseException:  # Ctrl-C or a bug here must not leave daemons behind either
            self.kill_all()
            raise

    def _start(self) -> RGW:
        started = time.monotonic()
        for sub in ("log", "run", "crash", "mon/ceph-a", "osd/ceph-0", "rgw/ceph-rgw.a"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        fsid = str(uuid.uuid4())
        osd_uuid = str(uuid.uuid4())
        mon_port, rgw_port = free_port(), free_port()
        self.conf.write_text(ceph_conf(self.workdir, fsid, mon_port, rgw_port, self.objectstore))
        conf = ("-c", str(self.conf))
        mon_log = self.log / "ceph-mon.a.log"
        osd_log = self.log / "ceph-osd.0.log"
        rgw_log = self.log / "ceph-client.rgw.a.log"

        monmap = str(self.workdir / "monmap")
        self.run(
            "monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", monmap, log=mon_log
        )
        self.run("ceph-mon", *conf, "--mkfs", "-i", "a", "--monmap", monmap, log=mon_log)
        self.spawn("ceph-mon", "ceph-mon", *conf, "-i", "a", "-f")
        self.wait_for_port("ceph-mon", mon_port, mon_log)
        # `ceph` without a command reads one command per line from stdin, all in one session;
        # it runs while the OSD's mkfs (the slow part with BlueStore) formats its store.
        commands = [f"osd new {osd_uuid} 0"]
        commands += [f"osd pool create {pool} {pgs}" for pool, pgs in RGW_POOLS.items()]
        commands += [f"osd pool application enable {pool} rgw" for pool in RGW_POOLS]
        commands += ["osd set noscrub", "osd set nodeep-scrub"]
        ceph = ("ceph", *conf, "--connect-timeout", str(int(self.remaining()) + 1))
        with self.background(*ceph, stdin="\n".join(commands) + "\n", log=mon_log):
            self.run("ceph-osd", *conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid, log=osd_log)
        self.spawn("ceph-osd", "ceph-osd", *conf, "-i", "0", "-f")

        self.spawn("radosgw", "radosgw", *conf, "-n", "client.rgw.a", "-f")
        self.wait_for_http("radosgw", f"http://127.0.0.1:{rgw_port}/", rgw_log)
        self.run(
            "radosgw-admin",
            *conf,
            "user",
            "create",
            "--uid=tusd-py-tests",
            "--display-name=tusd-py tests",
            f"--access-key={ACCESS_KEY}",
            f"--secret={SECRET_KEY}",
            log=rgw_log,
        )
        return RGW(
            endpoint=f"http://127.0.0.1:{rgw_port}",
            region=REGION,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            workdir=self.workdir,
            daemons=self.daemons,
            started_in=time.monotonic() - started,
        )


def start_rgw(workdir: Path, *, objectstore: ObjectStore = "bluestore", timeout: float = 90.0) -> RGW:
    """Start a monitor, an OSD and radosgw in `workdir`, create the S3 user, return the gateway.

    The returned RGW is also a context manager that stops it. Raises RGWStartError (with the
    tail of the daemon log that explains it) if something does not come up within `timeout`.
    """
    missing = missing_binaries()
    if missing:
        raise RGWStartError(
            f"{', '.join(missing)} not found on PATH: install Debian's radosgw ceph-mon ceph-osd ceph-common"
        )
    return _Starter(Path(workdir), objectstore, timeout).start()


@pytest.fixture(scope="session")
def ceph_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RGW]:
    """A Ceph S3 gateway for the whole session; `.new_bucket()` gives each test its own bucket.

    Without the Ceph binaries the tests that use it error out (RGWStartError names them); never skipped.
    """
    workdir = tmp_path_factory.mktemp("ceph")
    rgw = start_rgw(workdir)
    try:
        yield rgw
    finally:
        rgw.stop()
        # the block file may hold gigabytes; pytest keeps old temp dirs, the logs are enough
        shutil.rmtree(workdir / "osd", ignore_errors=True)


def main() -> None:
    workdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd() / "ceph-rgw"
    # SIGINT too: a shell that starts us in the background hands it down ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with start_rgw(workdir) as rgw:
        print(f"radosgw up in {rgw.started_in:.1f} s, logs in {workdir / 'log'}")
        print(f"endpoint {rgw.endpoint}")
        for name, value in rgw.env().items():
            print(f"export {name}={value}")
        print("Ctrl-C (or SIGTERM) stops it")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
