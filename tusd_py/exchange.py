"""One HTTP exchange as the verbs of either protocol see it: the request and the reply."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope

from . import protocol as p
from .hooks.events import RequestSnapshot

if TYPE_CHECKING:
    from .handler import TusOptions


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    # Which protocol answers: a tus reply carries Tus-Resumable, a draft reply does not.
    protocol: str = "tus"
    # The refusal's short reason, for the error metrics.
    reason: str = ""


# The scope extension in which our connection protocol (server.py) records when a
# request's headers arrived, as time.time().
ARRIVED_AT = "tusd_py.arrived_at"


class Request:
    """The parts of an HTTP request the verbs need."""

    def __init__(self, scope: Scope, receive: Receive, headers: dict[str, str], method: str) -> None:
        self.scope = scope
        self.receive = receive
        self.headers = headers
        self.method = method
        # When the request arrived, so that only newer requests preempt a lock holder: as our
        # connection protocol stamped it, or now under another server.
        arrived = scope.get("extensions", {}).get(ARRIVED_AT)
        self.arrived_at: float = arrived if isinstance(arrived, float) else time.time()

    def snapshot(self) -> RequestSnapshot:
        header: dict[str, list[str]] = {}
        for raw_name, raw_value in self.scope["headers"]:
            name = "-".join(part.capitalize() for part in raw_name.decode("latin-1").split("-"))
            header.setdefault(name, []).append(raw_value.decode("latin-1"))
        client = self.scope.get("client")
        query = self.scope.get("query_string", b"").decode("latin-1")
        path = self.scope.get("raw_path") or self.scope["path"].encode()
        return RequestSnapshot(
            method=self.method,
            uri=path.decode("latin-1") + ("?" + query if query else ""),
            remote_addr=f"{client[0]}:{client[1]}" if client else "",
            header={k: tuple(v) for k, v in header.items()},
        )

    def field(self, name: str) -> str | None:
        """All lines of a field joined as RFC 9110 says (`headers` keeps only the last)."""
        raw = name.encode("latin-1")
        values = [v.decode("latin-1") for k, v in self.scope["headers"] if k.lower() == raw]
        return ", ".join(values) if values else None

    def upload_url(self, options: TusOptions, upload_id: str) -> str:
        origin = p.public_origin(
            self.scope.get("scheme", "http"), self.headers, self.scope.get("server"), behind_proxy=options.behind_proxy
        )
        return origin.url(self.scope.get("root_path", "") + options.base_path + upload_id)
