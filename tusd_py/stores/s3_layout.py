"""Where each byte of an S3 upload lives: pure functions, no I/O.

Part n of an upload always covers the same byte range, fixed when the upload is
created. Whichever request (or instance, or crashed attempt) uploaded part n, it holds
the bytes the client sent for that range, so a part that outlived a failed neighbour
is never out of place. Bytes past the last stored part wait in a tail object that
names the part it begins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MiB = 1024 * 1024
# S3's limits, the same on AWS, MinIO and Ceph RGW.
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
# Uploads of unknown length double their part size every GROW_EVERY parts: small
# uploads keep small buffers, and 10,000 parts still reach S3's 5 TiB object limit.
GROW_EVERY = 1000


@dataclass(frozen=True)
class Layout:
    """Part sizes of one upload: `base` bytes, doubled every `grow_every` parts (0: never)."""

    base: int
    grow_every: int = 0

    def size_of(self, number: int) -> int:
        """The length of part `number` (1-based) when it is full."""
        if not self.grow_every:
            return self.base
        return min(self.base << ((number - 1) // self.grow_every), MAX_PART)

    def start_of(self, number: int) -> int:
        """The upload offset of part `number`'s first byte."""
        if not self.grow_every:
            return (number - 1) * self.base
        start, done = 0, 0
        while done < number - 1:
            run = min(self.grow_every - done % self.grow_every, number - 1 - done)
            start += run * self.size_of(done + 1)
            done += run
        return start

    def length_of(self, number: int, size: int | None) -> int:
        """The length part `number` will have: full, or shorter when the upload ends in it."""
        full = self.size_of(number)
        if size is None:
            return full
        return max(0, min(full, size - self.start_of(number)))


def choose_layout(size: int | None, part_size: int) -> Layout:
    """Parts of `part_size`, raised (to whole MiB) when `size` needs more than 10,000 of them."""
    if size is None:
        return Layout(part_size, GROW_EVERY)
    needed = -(-size // MAX_PARTS)
    return Layout(max(part_size, -(-needed // MiB) * MiB))


@dataclass(frozen=True)
class Extent:
    """What the stored objects add up to."""

    offset: int
    # The part that the next byte belongs to, and how many of its bytes are in the tail.
    next_part: int
    tail_counted: bool
    # A part shorter than its layout ends the upload: nothing can follow it.
    closed: bool


def stored_extent(layout: Layout, parts: Mapping[int, int], tail_part: int | None, tail_size: int) -> Extent:
    """The upload's offset from its listed parts (number -> size) and its tail object.

    Parts count from 1 while they follow each other; a part beyond a missing one is not
    counted (yet: it joins when the gap is filled, its bytes being at their own offsets).
    The tail counts only if it begins the first missing part: a tail whose part has since
    been stored is stale, its bytes already counted in that part.
    """
    offset, number = 0, 1
    while number in parts:
        length = parts[number]
        offset += length
        if length != layout.size_of(number):
            return Extent(offset, number + 1, False, True)
        number += 1
    if tail_part == number and tail_size:
        return Extent(offset + tail_size, number, True, False)
    return Extent(offset, number, False, False)


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of source number `source`."""

    source: int
    start: int
    end: int


@dataclass(frozen=True)
class PlannedPart:
    pieces: tuple[Piece, ...]

    @property
    def copied(self) -> bool:
        """One range of one source: S3 copies it (UploadPartCopy); else it is downloaded."""
        return len(self.pieces) == 1

    @property
    def size(self) -> int:
        return sum(p.end - p.start for p in self.pieces)


def plan_concatenation(sizes: Sequence[int], min_part: int = MIN_PART, max_copy: int = MAX_PART) -> list[PlannedPart]:
    """Parts that put the sources end to end: every part but the last at least `min_part`.

    A source at least `min_part` long is copied server-side in ranges of at most
    `max_copy`. Shorter sources are gathered (with the head of the next source when
    needed) into a part of exactly `min_part` that is downloaded and uploaded, so at
    most `min_part` bytes are ever held in memory for one part. `max_copy` is at least
    twice `min_part` (S3's are 5 GiB and 5 MiB), so that split ranges stay long enough.
    """
    parts: list[PlannedPart] = []
    pending: list[Piece] = []
    pending_size = 0
    for source, size in enumerate(sizes):
        position = 0
        if pending:
            take = min(min_part - pending_size, size)
            if take:
                pending.append(Piece(source, 0, take))
                pending_size += take
                position = take
            if pending_size == min_part:
                parts.append(PlannedPart(tuple(pending)))
                pending, pending_size = [], 0
        remaining = size - position
        if remaining >= min_part:
            count = -(-remaining // max_copy)
            for index in range(count):
                start = position + remaining * index // count
                end = position + remaining * (index + 1) // count
                parts.append(PlannedPart((Piece(source, start, end),)))
        elif remaining:
            pending.append(Piece(source, position, size))
            pending_size += remaining
    if pending:
        parts.append(PlannedPart(tuple(pending)))
    return parts
