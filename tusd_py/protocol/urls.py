"""Where clients reach the server: the absolute base for Location headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_PREFIX = re.compile(r"(/[A-Za-z0-9._~\-]+)*/?")


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    prefix: str = ""

    def url(self, path: str) -> str:
        """`path` starts with '/'; the prefix is joined without doubling slashes."""
        return f"{self.scheme}://{self.host}{self.prefix.rstrip('/')}{path}"


def _forwarded_pairs(value: str) -> dict[str, str]:
    """The first element of an RFC 7239 Forwarded header (the client-most proxy)."""
    first = value.split(",", 1)[0]
    pairs = {}
    for part in first.split(";"):
        if "=" in part:
            key, _, val = part.partition("=")
            pairs[key.strip().lower()] = val.strip().strip('"')
    return pairs


def public_origin(
    scheme: str,
    headers: Mapping[str, str],
    server: tuple[str, int] | None,
    *,
    behind_proxy: bool,
) -> Origin:
    """Work out scheme, host and path prefix as the client saw them.

    Proxy headers are trusted only when `behind_proxy` is set: otherwise any client could
    make the server hand out URLs that point elsewhere. Values that do not look like a
    host, scheme or path are ignored rather than echoed.
    """
    host = headers.get("host")
    prefix = ""
    if behind_proxy:
        forwarded = _forwarded_pairs(headers.get("forwarded", ""))
        proto = forwarded.get("proto") or _first(headers.get("x-forwarded-proto"))
        if proto and proto.lower() in ("http", "https"):
            scheme = proto.lower()
        fwd_host = forwarded.get("host") or _first(headers.get("x-forwarded-host"))
        if fwd_host and _HOST.fullmatch(fwd_host):
            host = fwd_host
        fwd_prefix = _first(headers.get("x-forwarded-prefix"))
        if fwd_prefix and _PREFIX.fullmatch(fwd_prefix):
            prefix = fwd_prefix
    if not host or not _HOST.fullmatch(host):
        if server is None:
            host = "localhost"
        elif ":" in server[0]:
            host = f"[{server[0]}]:{server[1]}"
        else:
            host = f"{server[0]}:{server[1]}"
    return Origin(scheme, host, prefix)


def _first(value: str | None) -> str | None:
    return value.split(",", 1)[0].strip() if value else None
