"""Header parsers: the accepted forms, each refusal's status, and no exception but TusError."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import (
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    Concat,
    CreationLength,
    TusError,
    check_patch_content_type,
    check_tus_resumable,
    parse_content_length,
    parse_creation_length,
    parse_upload_concat,
    parse_upload_length,
    parse_upload_offset,
    upload_id_from_url,
)

MAX_INT64 = 2**63 - 1
INT_PARSERS: list[Callable[[str], int | None]] = [parse_upload_offset, parse_upload_length, parse_content_length]


@pytest.mark.parametrize("parse", INT_PARSERS)
@pytest.mark.parametrize(("text", "expected"), [("0", 0), ("42", 42), (" 7 ", 7), (str(MAX_INT64), MAX_INT64)])
def test_integer_headers_accept_non_negative_int64(
    parse: Callable[[str], int | None], text: str, expected: int
) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("parse", INT_PARSERS)
@pytest.mark.parametrize(
    "text",
    [
        "-1",
        "+1",
        "",
        " ",
        "abc",
        "1.5",
        "1e3",
        "0x10",
        "1 2",
        "١٢",  # Arabic-Indic digits: int() would take them, the header grammar does not
        str(MAX_INT64 + 1),
        "9" * 19,
        "9" * 20,
        "1" + "0" * 100,
    ],
)
def test_integer_headers_refuse_with_400(parse: Callable[[str], int | None], text: str) -> None:
    with pytest.raises(TusError) as caught:
        parse(text)
    assert caught.value.status == 400


def test_upload_offset_is_required() -> None:
    with pytest.raises(TusError) as caught:
        parse_upload_offset(None)
    assert caught.value.status == 400


def test_absent_lengths_are_none() -> None:
    assert parse_upload_length(None) is None
    assert parse_content_length(None) is None


@given(st.text())
def test_integer_parsers_raise_only_tus_error_and_stay_in_int64(text: str) -> None:
    for parse in INT_PARSERS:
        try:
            value = parse(text)
        except TusError as error:
            assert error.status == 400
        else:
            assert value is not None
            assert 0 <= value <= MAX_INT64


@given(st.integers(min_value=0, max_value=MAX_INT64))
def test_integer_parsers_round_trip_every_int64(number: int) -> None:
    for parse in INT_PARSERS:
        assert parse(str(number)) == number


def test_tus_resumable_must_be_1_0_0() -> None:
    check_tus_resumable(TUS_VERSION)
    for value in (None, "", "0.2.2", "1.0", "1.0.0 "):
        with pytest.raises(TusError) as caught:
            check_tus_resumable(value)
        assert caught.value.status == 412
        assert caught.value.headers == {"Tus-Version": TUS_VERSION}


@pytest.mark.parametrize(
    "value", [OFFSET_CONTENT_TYPE, "Application/Offset+Octet-Stream", f"{OFFSET_CONTENT_TYPE}; charset=x"]
)
def test_patch_content_type_accepted(value: str) -> None:
    check_patch_content_type(value)


@pytest.mark.parametrize("value", [None, "", "application/octet-stream", "text/plain", "application/offset"])
def test_patch_content_type_refused_with_415(value: str | None) -> None:
    with pytest.raises(TusError) as caught:
        check_patch_content_type(value)
    assert caught.value.status == 415


def test_creation_length_forms() -> None:
    assert parse_creation_length("10", None, is_final=False) == CreationLength(10, False)
    assert parse_creation_length("0", None, is_final=False) == CreationLength(0, False)
    assert parse_creation_length(None, "1", is_final=False) == CreationLength(None, True)
    assert parse_creation_length(None, None, is_final=True) == CreationLength(None, False)


@pytest.mark.parametrize(
    ("length", "defer", "is_final"),
    [
        (None, None, False),  # neither length nor defer
        ("10", "1", False),  # both
        (None, "0", False),
        (None, "yes", False),
        ("-1", None, False),
        ("ten", None, False),
        (str(MAX_INT64 + 1), None, False),
        ("10", None, True),  # a final upload's length is the partials' sum
    ],
)
def test_creation_length_refusals_are_400(length: str | None, defer: str | None, is_final: bool) -> None:
    with pytest.raises(TusError) as caught:
        parse_creation_length(length, defer, is_final=is_final)
    assert caught.value.status == 400


@given(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text()), st.booleans())
def test_creation_length_raises_only_tus_error(length: str | None, defer: str | None, is_final: bool) -> None:
    try:
        result = parse_creation_length(length, defer, is_final=is_final)
    except TusError as error:
        assert error.status == 400
    else:
        if result.length is not None:
            assert 0 <= result.length <= MAX_INT64
            assert not result.deferred


def test_upload_concat_forms() -> None:
    assert parse_upload_concat(None) is None
    assert parse_upload_concat("partial") == Concat(is_partial=True, is_final=False)
    final = parse_upload_concat("final;/files/a http://h/files/b")
    assert final == Concat(is_partial=False, is_final=True, partial_urls=("/files/a", "http://h/files/b"))


@pytest.mark.parametrize("value", ["", "partial;x", "final", "final;", "final;   ", "FINAL;/a", "other"])
def test_upload_concat_refusals_are_400(value: str) -> None:
    with pytest.raises(TusError) as caught:
        parse_upload_concat(value)
    assert caught.value.status == 400


@given(st.text())
def test_upload_concat_raises_only_tus_error(text: str) -> None:
    try:
        concat = parse_upload_concat(text)
    except TusError as error:
        assert error.status == 400
    else:
        assert concat is not None
        assert concat.is_partial != concat.is_final
        assert all(url and " " not in url for url in concat.partial_urls)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://host/files/abc", "abc"),
        ("/files/abc/", "abc"),
        ("/files/abc?x=1#frag", "abc"),
        ("abc", "abc"),
    ],
)
def test_upload_id_from_url(url: str, expected: str) -> None:
    assert upload_id_from_url(url) == expected
