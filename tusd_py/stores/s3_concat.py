"""Concatenation on S3: the partials' objects become the parts of the final upload.

Long ranges are copied by S3 itself (UploadPartCopy); partials shorter than S3's
minimum part are downloaded and joined into one part (see plan_concatenation).
"""

from __future__ import annotations

import asyncio
import io

from .s3_bucket import Bucket
from .s3_budget import MemoryBudget
from .s3_layout import plan_concatenation

READ_BLOCK = 1024 * 1024


async def copy_parts(
    bucket: Bucket,
    budget: MemoryBudget,
    max_in_flight: int,
    key: str,
    multipart: str,
    sources: list[str],
    sizes: list[int],
) -> dict[int, str]:
    """Fill multipart upload `multipart` of `key` with the `sources` end to end; their ETags."""
    plan = plan_concatenation(sizes)
    etags: dict[int, str] = {}
    turns = asyncio.Semaphore(max_in_flight)

    async def store(number: int) -> None:
        part = plan[number - 1]
        async with turns:
            if part.copied:
                piece = part.pieces[0]
                etags[number] = await bucket.copy_part(
                    key, multipart, number, sources[piece.source], piece.start, piece.end
                )
                return
            reserved = await budget.reserve(part.size)
            try:
                body = io.BytesIO()
                for piece in part.pieces:
                    async for block in bucket.stream(sources[piece.source], piece.start, piece.end, READ_BLOCK):
                        body.write(block)
                body.seek(0)
                etags[number] = await bucket.upload_part(key, multipart, number, body)
            finally:
                budget.release(reserved)

    await asyncio.gather(*(store(number) for number in range(1, len(plan) + 1)))
    return etags
