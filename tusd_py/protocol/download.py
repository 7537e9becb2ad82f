"""Headers for downloading an upload: never a type a browser would run as a page."""

from __future__ import annotations

import re
from urllib.parse import quote

# Media the browser may show inline. HTML, SVG, XML and anything scriptable are served
# as an opaque attachment whatever the uploader declared.
_INLINE = re.compile(r"(audio|video)/[a-z0-9][a-z0-9.+-]{0,63}|image/(png|jpeg|gif|webp|avif|bmp)|text/plain")
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/;]')


def download_headers(metadata: dict[str, str | None]) -> dict[str, str]:
    declared = (metadata.get("filetype") or "").split(";", 1)[0].strip().lower()
    inline = _INLINE.fullmatch(declared) is not None
    headers = {
        "Content-Type": declared if inline else "application/octet-stream",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Accept-Ranges": "bytes",
    }
    if declared == "text/plain":
        headers["Content-Type"] = "text/plain; charset=utf-8"
    disposition = "inline" if inline else "attachment"
    filename = metadata.get("filename") or metadata.get("name")
    if filename:
        ascii_name = _UNSAFE_FILENAME.sub("_", filename).encode("ascii", "replace").decode("ascii")
        disposition += f"; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
    headers["Content-Disposition"] = disposition
    return headers
