"""public_origin: the base of Location headers, from Host and (if trusted) proxy headers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import Origin, public_origin

SERVER = ("127.0.0.1", 1080)
# What a host[:port] in a URL may hold without changing the URL's meaning.
SAFE_HOST = re.compile(r"[A-Za-z0-9.\-:\[\]]+")
SAFE_PREFIX = re.compile(r"[A-Za-z0-9._~\-/]*")

header_names = st.sampled_from(["host", "forwarded", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-prefix"])
header_values = st.one_of(
    st.text(),
    st.text(alphabet="abc.:[]/@?#\\ ,;=\"'%\r\n<>1", max_size=30),
    st.builds(lambda v: f"host={v};proto=https", st.text(max_size=20)),
)


def test_host_header_is_used() -> None:
    origin = public_origin("http", {"host": "example.com:8080"}, SERVER, behind_proxy=False)
    assert origin == Origin("http", "example.com:8080", "")
    assert origin.url("/files/abc") == "http://example.com:8080/files/abc"


def test_ipv6_host_header_is_used() -> None:
    origin = public_origin("http", {"host": "[::1]:8080"}, SERVER, behind_proxy=False)
    assert origin.host == "[::1]:8080"


@pytest.mark.parametrize("host", ["", "evil.com/path", "a@b", "a b", "x\r\nSet-Cookie: a=b", "é.com", "a:port"])
def test_bad_host_falls_back_to_server_address(host: str) -> None:
    assert public_origin("http", {"host": host}, SERVER, behind_proxy=False).host == "127.0.0.1:1080"


def test_no_host_no_server_is_localhost() -> None:
    assert public_origin("https", {}, None, behind_proxy=False) == Origin("https", "localhost", "")


def test_ipv6_server_address_fallback_is_bracketed() -> None:
    origin = public_origin("http", {}, ("::1", 1080), behind_proxy=False)
    assert origin.host == "[::1]:1080"


PROXY_HEADERS = {
    "host": "internal:9000",
    "x-forwarded-host": "public.example, proxy2",
    "x-forwarded-proto": "https",
    "x-forwarded-prefix": "/api",
}


def test_proxy_headers_ignored_unless_behind_proxy() -> None:
    assert public_origin("http", PROXY_HEADERS, SERVER, behind_proxy=False) == Origin("http", "internal:9000", "")


def test_x_forwarded_headers_behind_proxy() -> None:
    origin = public_origin("http", PROXY_HEADERS, SERVER, behind_proxy=True)
    assert origin == Origin("https", "public.example", "/api")
    assert origin.url("/files/x") == "https://public.example/api/files/x"


def test_forwarded_header_wins_over_x_forwarded() -> None:
    headers = {**PROXY_HEADERS, "forwarded": 'for=1.2.3.4;host="fwd.example:8443";proto=HTTPS, host=second'}
    origin = public_origin("http", headers, SERVER, behind_proxy=True)
    assert (origin.scheme, origin.host) == ("https", "fwd.example:8443")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-forwarded-proto", "javascript"),
        ("x-forwarded-host", "evil.com/x"),
        ("x-forwarded-host", "evil.com@x"),
        ("x-forwarded-prefix", "//evil.com"),
        ("x-forwarded-prefix", "/a b"),
        ("x-forwarded-prefix", "/a?x"),
        ("forwarded", "host=evil.com/x;proto=ftp"),
    ],
)
def test_implausible_proxy_values_are_ignored(name: str, value: str) -> None:
    origin = public_origin("http", {"host": "h", name: value}, SERVER, behind_proxy=True)
    assert origin == Origin("http", "h", "")


def test_trailing_slash_prefix_is_not_doubled() -> None:
    origin = public_origin("http", {"host": "h", "x-forwarded-prefix": "/api/"}, SERVER, behind_proxy=True)
    assert origin.url("/files/x") == "http://h/api/files/x"


@given(st.dictionaries(header_names, header_values), st.booleans(), st.sampled_from(["http", "https"]))
def test_origin_is_always_safe(headers: dict[str, str], behind_proxy: bool, scheme: str) -> None:
    origin = public_origin(scheme, headers, SERVER, behind_proxy=behind_proxy)
    assert origin.scheme in ("http", "https")
    assert SAFE_HOST.fullmatch(origin.host)
    assert SAFE_PREFIX.fullmatch(origin.prefix)
    assert not origin.prefix.startswith("//")
    if not behind_proxy:
        assert origin.prefix == ""
