"""Whatever the PATCH sizes and wherever connections drop, a resumed upload reads back intact."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from tests.conftest import RunningServer

ServerFactory = Callable[..., "RunningServer"]

TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024


def drop_mid_patch(url: str, offset: int, declared: int, body: bytes) -> None:
    """Send a PATCH declaring `declared` bytes, only `body` of them, then close the connection."""
    parsed = httpx.URL(url)
    head = (
        f"PATCH {parsed.raw_path.decode()} HTTP/1.1\r\n"
        f"Host: {parsed.host}:{parsed.port}\r\n"
        "Tus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    with socket.create_connection((parsed.host, parsed.port), timeout=10) as sock:
        sock.sendall(head + body)


def steps(largest: int) -> st.SearchStrategy[list[tuple[int, bool, float]]]:
    """Steps of (PATCH size, drop?, fraction of the body sent before the drop).

    The plan is drawn whole, before any request, because how far a dropped PATCH got
    depends on timing and hypothesis needs the same draws every time it replays an example.
    """
    return st.lists(st.tuples(st.integers(1, largest), st.booleans(), st.floats(0, 1)), max_size=10)


# (examples, largest upload and PATCH) per store. S3 keeps an upload in parts (5 MiB, the
# least S3 allows, set below) and a tail: its uploads span a few parts, so that PATCHes and
# drops land on both sides of part ends. Its examples cost about a second each: fewer.
PART = 5 * MiB
LIMITS = {"file": (25, MiB), "s3": (8, 3 * PART)}


# One server serves every example; each example makes its own upload.
@pytest.mark.all_stores
def test_resumed_upload_reads_back_byte_identical(server_factory: ServerFactory, tus_store: str) -> None:
    # The file store ignores the S3 part size.
    server = server_factory("--s3-part-size", str(PART))
    examples, largest = LIMITS[tus_store]

    @settings(max_examples=examples, deadline=None)
    @given(size=st.integers(1, largest), seed=st.integers(0, 2**32 - 1), plan=steps(largest))
    def upload(size: int, seed: int, plan: list[tuple[int, bool, float]]) -> None:
        resume_and_finish(server, size, seed, plan)

    upload()


def resume_and_finish(server: RunningServer, size: int, seed: int, plan: list[tuple[int, bool, float]]) -> None:
    payload = random.Random(seed).randbytes(size)
    with httpx.Client(headers=TUS, timeout=10) as client:
        created = client.post(server.endpoint, headers={"Upload-Length": str(size)})
        assert created.status_code == 201
        url = created.headers["location"]
        # The furthest byte any dropped PATCH sent: the upload may never get past it
        # except by a PATCH that completed.
        offset = reach = 0

        def resume() -> int:
            head = client.head(url)
            assert head.status_code == 200
            resumed = int(head.headers["upload-offset"])
            assert offset <= resumed <= max(offset, reach)
            return resumed

        # Whatever the plan leaves over goes in the last PATCHes.
        leftovers = [(size, False, 0.0)] * 3
        for patch_size, drop, sent_fraction in [*plan, *leftovers]:
            if offset == size:
                break
            n = min(patch_size, size - offset)
            if drop:
                cut = min(int(n * sent_fraction), n - 1)
                drop_mid_patch(url, offset, n, payload[offset : offset + cut])
                reach = max(reach, offset + cut)
                # The HEAD may end the dropped PATCH before it has read all that was sent.
                offset = resume()
                continue
            patch = client.patch(
                url,
                content=payload[offset : offset + n],
                headers={"Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)},
            )
            if patch.status_code == 409 or (patch.status_code == 400 and "upload-offset" in patch.headers):
                # A dropped PATCH, on a new connection, can be read after the HEAD and the
                # PATCH that followed it on the kept-alive one. Then it either appends what
                # it had received first (409 here), or, the newer request, ends this PATCH
                # (400 with the offset reached, part of this body kept). Either way a client
                # learns where the upload is from a HEAD.
                reach = max(reach, offset + n)
                offset = resume()
                continue
            assert patch.status_code == 204, patch.text
            assert int(patch.headers["upload-offset"]) == offset + n
            offset += n
        assert offset == size
        download = client.get(url)
        assert download.status_code == 200
        assert download.content == payload
        assert server.store.read(url.rsplit("/", 1)[-1]) == payload
