"""Upload one big file to an S3-compatible server through tusd-py and with plain boto3; print one JSON line per run.

tusd-py's S3 store next to its yardstick: the same file, the same server, once as one tus
PATCH through `tusd-py serve --s3-bucket ...` and once with boto3's own multipart upload
(`upload_file` with a TransferConfig), with its thread pool and with one thread. Without
--endpoint it starts Ceph's radosgw (tests/services/ceph_rgw.py, which needs the Debian
packages radosgw ceph-mon ceph-osd ceph-common and pytest importable) in a temporary
directory and stops it afterwards.

    python benchmarks/s3_upload.py                              # 1 GiB, 8 MiB parts, own radosgw
    python benchmarks/s3_upload.py --size 256M --runs 3
    python benchmarks/s3_upload.py --endpoint http://127.0.0.1:7480 --bucket b   # keys from AWS_* variables
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
from big_upload import MiB, PeakRss, free_port, parse_size, wait_for_port
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str
    region: str = "us-east-1"


@dataclass(frozen=True)
class Target:
    endpoint: str
    keys: Keys
    daemon_pids: dict[str, int]  # empty unless this script started the server


def s3_client(endpoint: str, keys: Keys, pool_size: int = 10) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=keys.region,
        aws_access_key_id=keys.access_key,
        aws_secret_access_key=keys.secret_key,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool_size),
    )


def make_file(path: Path, size: int) -> None:
    """`size` bytes that neither compress nor repeat within a part: 64 MiB of randomness, tagged per copy."""
    pattern = bytearray(os.urandom(64 * MiB))
    with path.open("wb") as out:
        written, copy = 0, 0
        while written < size:
            pattern[:8] = copy.to_bytes(8, "big")
            n = min(len(pattern), size - written)
            out.write(memoryview(pattern)[:n])
            written += n
            copy += 1


def boto3_upload(
    endpoint: str, keys: Keys, bucket: str, path: Path, part_size: int, *, threads: int = 10, key: str | None = None
) -> float:
    """Upload `path` with boto3's multipart upload; return the seconds it took (checked, then deleted)."""
    s3 = s3_client(endpoint, keys, pool_size=max(threads, 1))
    key = key or f"boto3-{uuid.uuid4().hex}"
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=threads,
        use_threads=threads > 1,
    )
    started = time.perf_counter()
    s3.upload_file(str(path), bucket, key, Config=config)
    seconds = time.perf_counter() - started
    stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    s3.delete_object(Bucket=bucket, Key=key)
    if stored != path.stat().st_size:
        raise RuntimeError(f"{key}: {stored} bytes stored, {path.stat().st_size} sent")
    return seconds


def tusd_upload(endpoint: str, keys: Keys, bucket: str, path: Path, part_size: int) -> tuple[float, float]:
    """Upload `path` as one PATCH through a fresh `tusd-py serve` on the S3 store.

    Returns the seconds from the first byte sent to the 204, and the server's peak RSS in MiB.
    """
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": keys.access_key,
        "AWS_SECRET_ACCESS_KEY": keys.secret_key,
        "AWS_DEFAULT_REGION": keys.region,
    }
    with tempfile.TemporaryDirectory(prefix="tusd-s3-") as upload_dir:
        command = [sys.executable, "-m", "tusd_py.cli", "serve", "--no-assets", "--no-access-log"]
        command += ["--port", str(port), "--upload-dir", upload_dir, "--s3-bucket", bucket]
        command += ["--s3-endpoint", endpoint, "--s3-path-style", "--s3-part-size", str(part_size)]
        # Its stdout (uvicorn's lines) would mix with the JSON lines this script prints.
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port, 30, server)
            size = path.stat().st_size
            origin = f"http://127.0.0.1:{port}"
            created = httpx.post(origin + "/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size)})
            created.raise_for_status()
            target = httpx.URL(created.headers["location"]).raw_path.decode()
            with PeakRss({"tusd-py": server.pid}) as rss, socket.create_connection(("127.0.0.1", port)) as conn:
                started = time.perf_counter()
                conn.sendall(
                    (
                        f"PATCH {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                        "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                        f"Content-Length: {size}\r\n\r\n"
                    ).encode()
                )
                with path.open("rb") as body:
                    conn.sendfile(body)
                answer = conn.recv(4096)
                seconds = time.perf_counter() - started
            if not answer.startswith(b"HTTP/1.1 204"):
                raise RuntimeError(f"PATCH answered {answer[:200]!r}")
            stored = s3_client(endpoint, keys).head_object(Bucket=bucket, Key=target.rsplit("/", 1)[-1])
            if stored["ContentLength"] != size:
                raise RuntimeError(f"{stored['ContentLength']} bytes stored, {size} sent")
            return seconds, rss.mib()["tusd-py"]
        finally:
            server.terminate()
            server.wait(30)


def timing(run: int, size: int, part_size: int, seconds: float) -> dict[str, object]:
    """The fields every printed line has: which run, what was sent, how fast."""
    return {
        "run": run,
        "size": size,
        "part_size": part_size,
        "seconds": round(seconds, 3),
        "MB/s": round(size / seconds / 1e6, 1),
        "MiB/s": round(size / seconds / MiB, 1),
    }


@contextlib.contextmanager
def own_radosgw(workdir: Path, objectstore: str) -> Iterator[Target]:
    sys.path.insert(0, str(REPO / "tests"))
    from services.ceph_rgw import start_rgw

    with start_rgw(workdir, objectstore=objectstore) as rgw:
        print(json.dumps({"event": "radosgw started", "seconds": round(rgw.started_in, 2)}), file=sys.stderr)
        pids = {name: process.pid for name, process in rgw.daemons.items()}
        yield Target(rgw.endpoint, Keys(rgw.access_key, rgw.secret_key, rgw.region), pids)


@contextlib.contextmanager
def given_server(args: argparse.Namespace) -> Iterator[Target]:
    access_key = args.access_key or os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = args.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        raise SystemExit("--endpoint needs --access-key/--secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    yield Target(args.endpoint, Keys(access_key, secret_key, args.region), {})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1024 * MiB, help="file size, e.g. 256M, 1G (default 1G)")
    parser.add_argument("--part-size", type=parse_size, default=8 * MiB, help="multipart part size (default 8M)")
    parser.add_argument("--threads", type=int, default=10, help="boto3 max_concurrency of the threaded run")
    parser.add_argument("--runs", type=int, default=1, help="rounds of (threaded, single-threaded)")
    parser.add_argument("--endpoint", default=None, help="an S3 server to use instead of starting radosgw")
    parser.add_argument("--access-key", default=None)
    parser.add_argument("--secret-key", default=None)
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--bucket", default=None, help="an existing bucket (default: a new one)")
    parser.add_argument("--objectstore", choices=("bluestore", "memstore"), default="bluestore")
    parser.add_argument("--dir", type=Path, default=None, help="where the file and radosgw's data go")
    args = parser.parse_args()
    if args.part_size < 5 * MiB:
        parser.error("S3 parts are at least 5 MiB")

    with tempfile.TemporaryDirectory(prefix="s3-upload-", dir=args.dir) as tmp:
        path = Path(tmp) / "body"
        make_file(path, args.size)
        server = given_server(args) if args.endpoint else own_radosgw(Path(tmp) / "ceph", args.objectstore)
        with server as target:
            bucket = args.bucket or f"bench-{uuid.uuid4().hex[:16]}"
            if not args.bucket:
                s3_client(target.endpoint, target.keys).create_bucket(Bucket=bucket)
            for run in range(args.runs):
                seconds, server_rss = tusd_upload(target.endpoint, target.keys, bucket, path, args.part_size)
                line = {
                    "client": "tusd-py (one PATCH)",
                    **timing(run, args.size, args.part_size, seconds),
                    "tusd_py_peak_rss_mib": server_rss,
                }
                print(json.dumps(line), flush=True)
                for threads in (args.threads, 1):
                    with PeakRss(target.daemon_pids) as rss:
                        seconds = boto3_upload(
                            target.endpoint, target.keys, bucket, path, args.part_size, threads=threads
                        )
                    line = {
                        "client": "boto3",
                        "threads": threads,
                        **timing(run, args.size, args.part_size, seconds),
                        "server": "radosgw " + args.objectstore if not args.endpoint else args.endpoint,
                        "server_peak_rss_mib": rss.mib(),
                    }
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
