"""Upload-Checksum parsing."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import ALGORITHMS, Checksum, TusError, parse_checksum


def header(algorithm: str, digest: bytes) -> str:
    return f"{algorithm} {base64.b64encode(digest).decode()}"


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_each_algorithm_parses_and_hashes(algorithm: str) -> None:
    digest = hashlib.new(algorithm, b"hello").digest()
    checksum = parse_checksum(header(algorithm, digest))
    assert checksum == Checksum(algorithm, digest)
    hasher = checksum.hasher()
    hasher.update(b"hel")
    hasher.update(memoryview(b"lo"))
    assert hasher.digest() == digest


def test_algorithm_name_is_case_insensitive() -> None:
    digest = hashlib.sha1(b"").digest()
    assert parse_checksum(header("SHA1", digest)) == Checksum("sha1", digest)


def test_absent_is_none() -> None:
    assert parse_checksum(None) is None


@pytest.mark.parametrize("algorithm", ["crc32", "sha3-256", "md4", "blake2b", "", "sha-1"])
def test_unknown_algorithm_is_400(algorithm: str) -> None:
    with pytest.raises(TusError) as caught:
        parse_checksum(header(algorithm, b"\0" * 20))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("algorithm", "length"), [("sha1", 19), ("sha1", 21), ("sha1", 0), ("md5", 20), ("sha256", 32 + 1)]
)
def test_wrong_digest_length_is_400(algorithm: str, length: int) -> None:
    with pytest.raises(TusError) as caught:
        parse_checksum(header(algorithm, b"\1" * length))
    assert caught.value.status == 400


@pytest.mark.parametrize("value", ["sha1", "sha1 ", "sha1 !!!!", "sha1 abc", "sha1 a b", "sha1  " + "A" * 28, "sha1 é"])
def test_malformed_is_400(value: str) -> None:
    with pytest.raises(TusError) as caught:
        parse_checksum(value)
    assert caught.value.status == 400


@given(st.text())
def test_raises_only_tus_error(text: str) -> None:
    try:
        checksum = parse_checksum(text)
    except TusError as error:
        assert error.status == 400
    else:
        assert checksum is not None
        assert len(checksum.digest) == hashlib.new(checksum.algorithm).digest_size


@given(st.sampled_from(sorted(ALGORITHMS)), st.binary(max_size=80))
def test_random_digests_are_accepted_only_at_the_right_length(algorithm: str, digest: bytes) -> None:
    right = len(digest) == hashlib.new(algorithm).digest_size
    try:
        parse_checksum(header(algorithm, digest))
    except TusError:
        assert not right
    else:
        assert right
