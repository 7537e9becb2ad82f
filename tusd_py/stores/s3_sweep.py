"""What crashed or interrupted uploads leave in S3, found and removed.

An upload is its info object: once that is gone (a termination cut short), or its bytes
are (a multipart upload aborted by a bucket lifecycle rule), nothing serves it any more,
and the objects and multipart uploads left behind only cost storage.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from ..protocol import is_valid_upload_id
from .base import UploadNotFound
from .s3_bucket import Bucket
from .s3_record import Record


async def sweep_abandoned(
    bucket: Bucket, prefix: str, read_record: Callable[[str], Awaitable[Record]], older_than: float
) -> int:
    """Remove leftovers older than `older_than` seconds; return how many things went.

    - a multipart upload that no info object names (a crash during creation,
      termination or concatenation) is aborted;
    - objects of an upload without an info object are deleted;
    - an info object whose upload has neither its multipart upload nor its object
      (and is not a final upload waiting for its partials) is deleted with its objects.
    """
    cutoff = time.time() - older_than
    objects: dict[str, dict[str, float]] = defaultdict(dict)
    async for key, modified in bucket.keys(prefix):
        upload_id, _, kind = key[len(prefix) :].partition(".")
        if is_valid_upload_id(upload_id):
            objects[upload_id][kind] = modified
    removed = 0
    named: set[str] = set()
    async for key, multipart, initiated in bucket.multipart_uploads(prefix):
        upload_id = key[len(prefix) :]
        if not is_valid_upload_id(upload_id):
            continue
        if "info" in objects[upload_id] and await _names(read_record, upload_id, multipart):
            named.add(upload_id)
        elif initiated < cutoff:
            await bucket.abort(key, multipart)
            removed += 1
    for upload_id, kinds in objects.items():
        info_modified = kinds.get("info")
        if info_modified is not None:
            if "" in kinds or upload_id in named or info_modified >= cutoff:
                continue
            if not await _is_broken(bucket, prefix + upload_id, read_record, upload_id):
                continue
        for kind, modified in kinds.items():
            # The info object goes last: until then the next sweep finds the rest.
            if kind != "info" and modified < cutoff:
                await bucket.delete(prefix + upload_id + ("." + kind if kind else ""))
                removed += 1
        if info_modified is not None:
            await bucket.delete(prefix + upload_id + ".info")
            removed += 1
    return removed


async def _names(read_record: Callable[[str], Awaitable[Record]], upload_id: str, multipart: str) -> bool:
    try:
        record = await read_record(upload_id)
    except UploadNotFound:
        return False
    return record.multipart == multipart and not record.completed


async def _is_broken(bucket: Bucket, key: str, read_record: Callable[[str], Awaitable[Record]], upload_id: str) -> bool:
    """Has the upload neither its multipart upload nor its object? Looked at afresh: the
    listing may be older than a completion that happened since."""
    try:
        record = await read_record(upload_id)
    except UploadNotFound:
        # Gone meanwhile, or damaged beyond reading: nothing can serve it either way.
        return True
    if record.is_final and not record.completed:
        # Waiting for its partials: it has no bytes yet.
        return False
    if record.multipart is not None and await bucket.parts(key, record.multipart) is not None:
        return False
    # Checked after the multipart upload: completing one makes the object appear.
    return await bucket.head(key) is None
