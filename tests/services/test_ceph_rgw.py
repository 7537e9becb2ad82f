"""The Ceph S3 gateway fixture does what the S3 store relies on: multipart uploads, UploadPartCopy, ranges."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from services.ceph_rgw import RGW, RGWStartError, start_rgw

MiB = 1024 * 1024
PART = 5 * MiB  # the S3 minimum for every part but the last


def body(size: int, seed: int = 0) -> bytes:
    """Bytes whose every 4 KiB block differs, so a misplaced range or part shows."""
    block = 4096
    return b"".join((i + seed).to_bytes(8, "big") * (block // 8) for i in range(-(-size // block)))[:size]


def error_code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_multipart_upload_complete_and_ranged_get(ceph_s3: RGW) -> None:
    s3: Any = ceph_s3.client()
    bucket = ceph_s3.new_bucket()
    data = body(PART + 12345)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="a/b")["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key="a/b", UploadId=upload_id, PartNumber=n, Body=chunk)["ETag"]
        for n, chunk in ((1, data[:PART]), (2, data[PART:]))
    ]

    parts = s3.list_parts(Bucket=bucket, Key="a/b", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [(1, PART, etags[0]), (2, 12345, etags[1])]

    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="a/b",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": etag} for n, etag in enumerate(etags)]},
    )
    assert s3.head_object(Bucket=bucket, Key="a/b")["ContentLength"] == len(data)
    ranged = s3.get_object(Bucket=bucket, Key="a/b", Range=f"bytes={PART - 10}-{PART + 9}")
    assert ranged["ContentRange"] == f"bytes {PART - 10}-{PART + 9}/{len(data)}"
    assert ranged["Body"].read() == data[PART - 10 : PART + 10]
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == data


def test_list_parts_after_abort_answers_no_such_upload_or_no_such_key(ceph_s3: RGW) -> None:
    s3: Any = ceph_s3.client()
    bucket = ceph_s3.new_bucket()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=upload_id, PartNumber=1, Body=b"x" * 1000)
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)

    with pytest.raises(ClientError) as raised:
        s3.list_parts(Bucket=bucket, Key="gone", UploadId=upload_id)
    # AWS says NoSuchUpload, Ceph 16 says NoSuchKey: the S3 store must take either as "gone".
    assert error_code(raised.value) in {"NoSuchUpload", "NoSuchKey"}
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_upload_part_copy_assembles_an_object_from_another(ceph_s3: RGW) -> None:
    s3: Any = ceph_s3.client()
    bucket = ceph_s3.new_bucket()
    source = body(PART + 777, seed=1)
    s3.put_object(Bucket=bucket, Key="source", Body=source)

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copy")["UploadId"]
    whole = s3.upload_part_copy(
        Bucket=bucket, Key="copy", UploadId=upload_id, PartNumber=1, CopySource={"Bucket": bucket, "Key": "source"}
    )["CopyPartResult"]["ETag"]
    ranged = s3.upload_part_copy(
        Bucket=bucket,
        Key="copy",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange="bytes=100-199",
    )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="copy",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": whole}, {"PartNumber": 2, "ETag": ranged}]},
    )
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == source + source[100:200]


def test_list_multipart_uploads_shows_the_open_ones_only(ceph_s3: RGW) -> None:
    s3: Any = ceph_s3.client()
    bucket = ceph_s3.new_bucket()
    opened = {key: s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"] for key in ("u/1", "u/2", "u/3")}
    s3.abort_multipart_upload(Bucket=bucket, Key="u/2", UploadId=opened["u/2"])

    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="u/")["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in listed) == [("u/1", opened["u/1"]), ("u/3", opened["u/3"])]


def test_env_lets_a_subprocess_sign_requests(ceph_s3: RGW) -> None:
    bucket = ceph_s3.new_bucket("env")
    script = (
        "import sys, boto3\n"
        "boto3.client('s3', endpoint_url=sys.argv[1]).put_object(Bucket=sys.argv[2], Key='k', Body=b'v')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | ceph_s3.env()
    done = subprocess.run(
        [sys.executable, "-c", script, ceph_s3.endpoint, bucket], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert ceph_s3.client().get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_new_bucket_names_are_fresh_and_dns_safe(ceph_s3: RGW) -> None:
    names = {ceph_s3.new_bucket("dns") for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert name.startswith("dns-") and name == name.lower() and 3 <= len(name) <= 63
        assert name.replace("-", "").isalnum()
    listed = {b["Name"] for b in ceph_s3.client().list_buckets()["Buckets"]}
    assert names <= listed


def test_start_refuses_without_the_ceph_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RGWStartError, match="ceph-mon, ceph-osd, radosgw, monmaptool, ceph, radosgw-admin"):
        start_rgw(tmp_path / "ceph")


def test_a_daemon_that_fails_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    # an OSD directory formatted for another OSD: ceph-osd --mkfs refuses it
    osd_dir = tmp_path / "osd" / "ceph-0"
    osd_dir.mkdir(parents=True)
    (osd_dir / "fsid").write_text("00000000-0000-0000-0000-000000000001\n")
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    # The failing command, its exit status and the tail of its log; which of the OSD's own
    # lines fall into the tail varies between runs.
    with pytest.raises(RGWStartError, match=r"ceph-osd .*--mkfs .* exited \d+:[\s\S]*tail of .*ceph-osd\.0\.log"):
        start_rgw(tmp_path, timeout=60)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], "the monitor started before the failure is still running"
