"""The S3 calls the store makes, on one lazily created aiobotocore client.

Every call answers in the store's terms: "not found" in any server's spelling (a 404,
NoSuchKey, NoSuchUpload) is one thing, and every other failure, from an error reply to
a refused connection, is S3Unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

# Spellings of "no such thing" across AWS, MinIO and Ceph RGW (after an abort, Ceph
# answers ListParts with NoSuchKey where AWS says NoSuchUpload).
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})


class S3Unavailable(OSError):
    """S3 failed or refused a request. Nothing is lost: the upload is as get_info says.

    An OSError, as a failing disk would raise: the handler answers 503 for both.
    """


class Missing(Exception):
    """The object or multipart upload asked for does not exist."""


def is_not_found(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code")
    # A missing bucket is a configuration error, not a missing upload.
    if code == "NoSuchBucket":
        return False
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _NOT_FOUND_CODES or status == 404


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    try:
        yield
    except S3Unavailable:
        raise
    except ClientError as error:
        if is_not_found(error):
            raise Missing(what) from None
        raise S3Unavailable(f"S3 refused to {what}: {error}") from error
    except (BotoCoreError, aiohttp.ClientError, OSError) as error:
        raise S3Unavailable(f"S3 could not {what}: {error!r}") from error


@dataclass(frozen=True)
class Head:
    size: int
    modified: float
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class StoredPart:
    size: int
    etag: str
    modified: float


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


class Bucket:
    """One bucket of one S3 endpoint. No I/O until the first call."""

    def __init__(
        self,
        name: str,
        *,
        endpoint_url: str | None,
        region: str | None,
        path_style: bool,
        max_connections: int,
        session: AioSession | None = None,
    ) -> None:
        self.name = name
        self.session = session
        # Items per listing page; S3's own maximum (tests lower it to see pages turn).
        self.page_size = 1000
        self.endpoint_url = endpoint_url
        self.config = AioConfig(
            region_name=region,
            signature_version="s3v4",
            # Virtual hosts unless asked otherwise (botocore keeps paths for IP endpoints).
            s3={"addressing_style": "path" if path_style else "virtual"},
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=max_connections,
            # The newer default checksums (CRC32 trailers on every request) are not
            # understood by every S3-compatible server; ask for them only where required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._opening: asyncio.Lock | None = None

    async def client(self) -> S3Client:
        if self._client is not None:
            return self._client
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                # A session's first client loads botocore's service models (~0.3 s).
                session = self.session or AioSession()
                creating = session.create_client("s3", endpoint_url=self.endpoint_url, config=self.config)
                with translated("connect"):
                    self._client = cast("S3Client", await stack.enter_async_context(creating))
                self._exit_stack = stack
        return self._client

    async def aclose(self) -> None:
        stack, self._exit_stack, self._client = self._exit_stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- objects ----------------------------------------------------------------------

    async def head(self, key: str) -> Head | None:
        client = await self.client()
        try:
            with translated(f"look at {key}"):
                reply = await client.head_object(Bucket=self.name, Key=key)
        except Missing:
            return None
        return Head(reply["ContentLength"], _timestamp(reply.get("LastModified")), reply.get("Metadata", {}))

    async def get(self, key: str) -> tuple[bytes, float] | None:
        """The object's bytes and modification time, or None."""
        client = await self.client()
        try:
            with translated(f"read {key}"):
                reply = await client.get_object(Bucket=self.name, Key=key)
                async with reply["Body"] as body:
                    data = await body.read()
        except Missing:
            return None
        return data, _timestamp(reply.get("LastModified"))

    async def stream(self, key: str, start: int, end: int, block: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the object, `block` bytes at a time. Raises Missing."""
        client = await self.client()
        with translated(f"read {key}"):
            reply = await client.get_object(Bucket=self.name, Key=key, Range=f"bytes={start}-{end - 1}")
        async with reply["Body"] as body:
            while True:
                with translated(f"read {key}"):
                    data = await body.read(block)
                if not data:
                    break
                yield data

    async def put(self, key: str, body: bytes | IO[bytes], metadata: Mapping[str, str] | None = None) -> None:
        client = await self.client()
        with translated(f"write {key}"):
            await client.put_object(Bucket=self.name, Key=key, Body=body, Metadata=dict(metadata or {}))

    async def delete(self, key: str) -> None:
        client = await self.client()
        with contextlib.suppress(Missing), translated(f"delete {key}"):
            await client.delete_object(Bucket=self.name, Key=key)

    async def keys(self, prefix: str) -> AsyncIterator[tuple[str, float]]:
        """Every key under `prefix` with its modification time, page by page."""
        client = await self.client()
        arguments: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": self.page_size}
        while True:
            with translated(f"list {prefix!r}"):
                page = await client.list_objects_v2(**arguments)
            for item in page.get("Contents", ()):
                yield item["Key"], _timestamp(item.get("LastModified"))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            arguments["ContinuationToken"] = token

    # -- multipart uploads ------------------------------------------------------------

    async def start_multipart(self, key: str) -> str:
        client = await self.client()
        with translated(f"start a multipart upload of {key}"):
            reply = await client.create_multipart_upload(Bucket=self.name, Key=key)
        return reply["UploadId"]

    async def parts(self, key: str, upload: str) -> dict[int, StoredPart] | None:
        """Every stored part (all pages), or None when the multipart upload is gone."""
        client = await self.client()
        found: dict[int, StoredPart] = {}
        marker = 0
        while True:
            try:
                with translated(f"list the parts of {key}"):
                    page = await client.list_parts(
                        Bucket=self.name, Key=key, UploadId=upload, PartNumberMarker=marker, MaxParts=self.page_size
                    )
            except Missing:
                return None
            for part in page.get("Parts", ()):
                found[part["PartNumber"]] = StoredPart(part["Size"], part["ETag"], _timestamp(part.get("LastModified")))
            next_marker = page.get("NextPartNumberMarker", 0)
            if not page.get("IsTruncated") or next_marker <= marker:
                return found
            marker = next_marker

    async def upload_part(self, key: str, upload: str, number: int, body: bytes | IO[bytes]) -> str:
        client = await self.client()
        with translated(f"store part {number} of {key}"):
            reply = await client.upload_part(Bucket=self.name, Key=key, UploadId=upload, PartNumber=number, Body=body)
        return reply["ETag"]

    async def copy_part(self, key: str, upload: str, number: int, source: str, start: int, end: int) -> str:
        client = await self.client()
        with translated(f"copy {source} into part {number} of {key}"):
            reply = await client.upload_part_copy(
                Bucket=self.name,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                CopySource={"Bucket": self.name, "Key": source},
                CopySourceRange=f"bytes={start}-{end - 1}",
            )
        return reply["CopyPartResult"]["ETag"]

    async def complete(self, key: str, upload: str, etags: Mapping[int, str]) -> None:
        """Raises Missing when the multipart upload is gone (completed or aborted)."""
        client = await self.client()
        parts: list[CompletedPartTypeDef] = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
        with translated(f"complete the multipart upload of {key}"):
            await client.complete_multipart_upload(
                Bucket=self.name, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )

    async def abort(self, key: str, upload: str) -> None:
        client = await self.client()
        with contextlib.suppress(Missing), translated(f"abort the multipart upload of {key}"):
            await client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload)

    async def multipart_uploads(self, prefix: str) -> AsyncIterator[tuple[str, str, float]]:
        """(key, upload id, initiated) of every unfinished multipart upload under `prefix`."""
        client = await self.client()
        arguments: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxUploads": self.page_size}
        while True:
            with translated(f"list the multipart uploads under {prefix!r}"):
                page = await client.list_multipart_uploads(**arguments)
            for item in page.get("Uploads", ()):
                yield item["Key"], item["UploadId"], _timestamp(item.get("Initiated"))
            marker = (page.get("NextKeyMarker", ""), page.get("NextUploadIdMarker", ""))
            if not page.get("IsTruncated") or marker == (arguments.get("KeyMarker"), arguments.get("UploadIdMarker")):
                return
            arguments["KeyMarker"], arguments["UploadIdMarker"] = marker
