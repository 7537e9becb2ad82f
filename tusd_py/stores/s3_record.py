"""The info object of an S3 upload, and the upload's state as S3 holds it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .s3_append import Tail, extent_of
from .s3_bucket import StoredPart
from .s3_layout import Extent, Layout


@dataclass(frozen=True)
class Record:
    """The info object: what does not change with each append."""

    id: str
    size: int | None
    metadata: dict[str, str | None]
    created_at: float
    layout: Layout
    multipart: str | None
    completed: bool = False
    is_partial: bool = False
    is_final: bool = False
    partial_uploads: tuple[str, ...] = ()
    protocol: str = "tus"

    def dump(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "size": self.size,
                "metadata": self.metadata,
                "created_at": self.created_at,
                "is_partial": self.is_partial,
                "is_final": self.is_final,
                "partial_uploads": list(self.partial_uploads),
                "protocol": self.protocol,
                "multipart_upload": self.multipart,
                "part_size": self.layout.base,
                "part_growth": self.layout.grow_every,
                "completed": self.completed,
            }
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> Record:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            id=data["id"],
            size=data["size"],
            metadata=data["metadata"],
            created_at=data["created_at"],
            layout=Layout(data["part_size"], data["part_growth"]),
            multipart=data["multipart_upload"],
            completed=data["completed"],
            is_partial=data["is_partial"],
            is_final=data["is_final"],
            partial_uploads=tuple(data["partial_uploads"]),
            protocol=data["protocol"],
        )


@dataclass
class State:
    """An upload as S3 holds it right now."""

    record: Record
    modified: float
    # Complete: the size of the finished object. Otherwise None, and the parts and tail.
    finished_size: int | None = None
    parts: dict[int, StoredPart] = field(default_factory=dict)
    tail: Tail | None = None

    @property
    def extent(self) -> Extent:
        return extent_of(self.record.layout, self.parts, self.tail)

    @property
    def offset(self) -> int:
        return self.finished_size if self.finished_size is not None else self.extent.offset
