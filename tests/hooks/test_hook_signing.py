"""Webhook signatures: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.hooks import SIGNATURE_HEADER, sign, verify

SECRET = "shared-secret"
BODY = b'{"Type":"post-finish"}'
NOW = 1_700_000_000


def test_header_follows_the_documented_recipe() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()

    assert sign(SECRET, BODY, NOW) == f"t=1700000000,v1={expected}"
    assert SIGNATURE_HEADER == "Hook-Signature"


def test_valid_signature_verifies() -> None:
    assert verify(SECRET, BODY, sign(SECRET, BODY, NOW), now=NOW + 10)
    assert verify(SECRET.encode(), BODY, sign(SECRET, BODY, NOW), now=NOW)
    assert verify(SECRET, BODY, sign(SECRET, BODY))


def test_tampered_body_fails() -> None:
    header = sign(SECRET, BODY, NOW)

    assert not verify(SECRET, BODY.replace(b"finish", b"create"), header, now=NOW)
    assert not verify(SECRET, BODY + b" ", header, now=NOW)


def test_wrong_secret_fails() -> None:
    assert not verify("other-secret", BODY, sign(SECRET, BODY, NOW), now=NOW)


def test_timestamp_is_bound_into_the_digest() -> None:
    digest = sign(SECRET, BODY, NOW).split("v1=")[1]

    assert not verify(SECRET, BODY, f"t={NOW + 1},v1={digest}", now=NOW)


@pytest.mark.parametrize("offset", [301, -301, 10_000])
def test_stale_or_future_timestamp_fails(offset: int) -> None:
    assert not verify(SECRET, BODY, sign(SECRET, BODY, NOW), now=NOW + offset)


def test_tolerance_is_adjustable() -> None:
    header = sign(SECRET, BODY, NOW)

    assert verify(SECRET, BODY, header, now=NOW + 3600, tolerance=4000)
    assert not verify(SECRET, BODY, header, now=NOW + 20, tolerance=10)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "t=,v1=abc", "t=abc,v1=abc", f"t={NOW}", f"v1={'0' * 64}", f"t=-{NOW},v1=00"],
)
def test_malformed_headers_fail_without_raising(header: str | None) -> None:
    assert not verify(SECRET, BODY, header, now=NOW)


@given(st.binary(min_size=1, max_size=32), st.binary(max_size=200), st.integers(min_value=0, max_value=4_000_000_000))
def test_any_signature_verifies_with_its_own_secret_only(secret: bytes, body: bytes, timestamp: int) -> None:
    header = sign(secret, body, timestamp)

    assert verify(secret, body, header, now=timestamp)
    assert not verify(secret + b"x", body, header, now=timestamp)
