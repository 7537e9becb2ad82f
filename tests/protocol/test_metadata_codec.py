"""The Upload-Metadata codec."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import TusError, decode_metadata, encode_metadata
from tusd_py.protocol.metadata import MAX_METADATA_BYTES

# The spec's keys: ASCII without space and comma.
KEY_ALPHABET = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ",")
keys = st.text(alphabet=KEY_ALPHABET, min_size=1, max_size=20)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Empty strings are left out: "k " and "k" both mean "no value" on the wire and decode to None.
@given(st.dictionaries(keys, st.one_of(st.none(), st.text(min_size=1)), max_size=10))
def test_round_trip(metadata: dict[str, str | None]) -> None:
    assert decode_metadata(encode_metadata(metadata)) == metadata


@given(st.text())
def test_decode_raises_only_tus_error(header: str) -> None:
    try:
        result = decode_metadata(header)
    except TusError as error:
        assert error.status == 400
    else:
        assert all(key and " " not in key and "," not in key for key in result)


@given(st.lists(st.tuples(keys, st.text(alphabet="ABCD=+/ \x00é", max_size=12)), max_size=5))
def test_decode_of_pair_shaped_text_raises_only_tus_error(pairs: list[tuple[str, str]]) -> None:
    header = ",".join(f"{k} {v}" for k, v in pairs)
    try:
        decode_metadata(header)
    except TusError as error:
        assert error.status == 400


def test_decode_known_header() -> None:
    header = f"filename {b64('wörld.txt')},is_confidential, filetype {b64('text/plain')}"
    assert decode_metadata(header) == {"filename": "wörld.txt", "is_confidential": None, "filetype": "text/plain"}


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_or_blank_is_empty(header: str | None) -> None:
    assert decode_metadata(header) == {}


def test_key_with_trailing_space_has_no_value() -> None:
    assert decode_metadata("k ") == {"k": None}


@pytest.mark.parametrize(
    "header",
    [
        "k !!!",  # not base64
        "k YQ",  # missing padding
        "k YQ==x",
        "k /w==",  # base64 of 0xff: not UTF-8
        "k " + b64("a") + " extra",  # three parts
        "k  " + b64("a"),  # two spaces
        "a " + b64("1") + ",a " + b64("2"),  # duplicate key
        "a,a",
        "a " + b64("1") + ",",  # empty pair
        ",a",
        "ké " + b64("x"),  # non-ASCII key
        "k\x00 " + b64("x"),
        "k é",
    ],
)
def test_malformed_is_400(header: str) -> None:
    with pytest.raises(TusError) as caught:
        decode_metadata(header)
    assert caught.value.status == 400


def test_too_long_is_400() -> None:
    header = "k " + b64("x" * MAX_METADATA_BYTES)
    assert len(header) > MAX_METADATA_BYTES
    with pytest.raises(TusError) as caught:
        decode_metadata(header)
    assert caught.value.status == 400


def test_just_under_the_limit_is_accepted() -> None:
    value = "x" * ((MAX_METADATA_BYTES - 10) * 3 // 4)
    header = "k " + b64(value)
    assert len(header) <= MAX_METADATA_BYTES
    assert decode_metadata(header) == {"k": value}
