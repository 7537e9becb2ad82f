"""download_headers: nothing an uploader declares makes the browser run the file as a page."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol.download import download_headers

ACTIVE_TYPES = [
    "text/html",
    "TEXT/HTML",
    "text/html; charset=utf-8",
    " text/html ",
    "image/svg+xml",
    "application/xhtml+xml",
    "application/xml",
    "text/xml",
    "text/javascript",
    "application/javascript",
    "application/ecmascript",
    "application/pdf",
    "text/css",
    "multipart/x-mixed-replace",
    "text/plain\r\nContent-Type: text/html",
    "image/png\ntext/html",
    "",
]
FORBIDDEN = ("html", "xml", "svg", "script", "css", "pdf", "multipart")


def media_type(headers: dict[str, str]) -> str:
    return headers["Content-Type"].split(";", 1)[0].strip().lower()


@pytest.mark.parametrize("filetype", ACTIVE_TYPES)
def test_active_types_become_opaque_attachments(filetype: str) -> None:
    headers = download_headers({"filetype": filetype})
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize(
    ("filetype", "content_type"),
    [
        ("image/png", "image/png"),
        ("IMAGE/JPEG", "image/jpeg"),
        ("video/mp4", "video/mp4"),
        ("audio/ogg; codecs=opus", "audio/ogg"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("text/plain; charset=utf-7", "text/plain; charset=utf-8"),
    ],
)
def test_passive_types_are_shown_inline(filetype: str, content_type: str) -> None:
    headers = download_headers({"filetype": filetype})
    assert headers["Content-Type"] == content_type
    assert headers["Content-Disposition"].startswith("inline")


def test_no_metadata_is_attachment_without_filename() -> None:
    headers = download_headers({})
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"
    assert "sandbox" in headers["Content-Security-Policy"]


def test_filename_is_quoted_and_utf8_encoded() -> None:
    headers = download_headers({"filename": 'a"b\\c/d;e\r\nf ö.txt', "filetype": "image/png"})
    disposition = headers["Content-Disposition"]
    assert disposition == (
        "inline; filename=\"a_b_c_d_e__f ?.txt\"; filename*=UTF-8''a%22b%5Cc%2Fd%3Be%0D%0Af%20%C3%B6.txt"
    )


def test_name_is_used_when_filename_is_absent() -> None:
    assert 'filename="x.bin"' in download_headers({"name": "x.bin"})["Content-Disposition"]


metadata_values = st.one_of(st.none(), st.text(), st.sampled_from(ACTIVE_TYPES))


@given(st.fixed_dictionaries({"filetype": metadata_values, "filename": metadata_values, "name": metadata_values}))
def test_never_an_active_type_and_header_safe(metadata: dict[str, str | None]) -> None:
    headers = download_headers(metadata)
    content_type = media_type(headers)
    assert not any(word in content_type for word in FORBIDDEN)
    assert content_type == "application/octet-stream" or content_type.startswith(
        ("image/", "audio/", "video/", "text/plain")
    )
    for name, value in headers.items():
        assert "\r" not in value and "\n" not in value, name
        value.encode("latin-1")
        assert all(0x20 <= ord(c) < 0x7F for c in value), name
    if metadata["filename"] is None and metadata["name"] is None:
        assert "filename" not in headers["Content-Disposition"]
