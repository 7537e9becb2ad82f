"""The draft's sans-I/O core: Structured Fields, its fields, lengths, limits, problems."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import TusError
from tusd_py.protocol import draft as d
from tusd_py.protocol.structured import (
    StructuredError,
    parse_boolean,
    parse_integer,
    parse_item,
    serialize_integer_dictionary,
)

# -- Structured Field values (RFC 9651) ---------------------------------------------------------

keys = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,8}", fullmatch=True)
tokens = st.from_regex(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]{0,8}", fullmatch=True)
strings = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=10)
integers = st.integers(-(10**15) + 1, 10**15 - 1)


def sf_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


bare_items = st.one_of(
    integers.map(str),
    st.decimals(-(10**11), 10**11, places=2, allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.2f}"),
    strings.map(sf_string),
    tokens,
    st.binary(max_size=8).map(lambda b: ":" + base64.b64encode(b).decode() + ":"),
    st.booleans().map(lambda b: "?1" if b else "?0"),
    integers.map(lambda v: f"@{v}"),
)
parameters = st.lists(
    st.tuples(keys, st.one_of(st.just(None), bare_items)).map(lambda kv: f";{kv[0]}" + (f"={kv[1]}" if kv[1] else "")),
    max_size=3,
).map("".join)


@given(integers, parameters, st.sampled_from(["", " ", "  "]))
def test_an_integer_item_parses_whatever_its_parameters(value: int, params: str, space: str) -> None:
    assert parse_integer(f"{space}{value}{params}{space}") == value


@given(st.booleans(), parameters)
def test_a_boolean_item_parses_whatever_its_parameters(value: bool, params: str) -> None:
    assert parse_boolean(("?1" if value else "?0") + params) is value


@given(strings)
def test_a_string_item_unescapes(text: str) -> None:
    assert parse_item(sf_string(text))[0] == text


@given(st.text(max_size=30))
def test_any_text_either_parses_or_is_refused_plainly(text: str) -> None:
    try:
        value, params = parse_item(text)
    except StructuredError:
        return
    assert isinstance(value, int | float | str | bytes)
    assert all(key == key.lower() for key in params)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1 2",
        "?2",
        "1000000000000000",
        "1.",
        "1.2345",
        "01x",
        "-",
        '"open',
        '"a\\b"',
        ":a:b",
        "1;",
        "1;A=1",
        "?1,?0",
    ],
)
def test_values_that_are_not_items_are_refused(text: str) -> None:
    with pytest.raises(StructuredError):
        parse_item(text)


def test_a_boolean_is_not_an_integer_nor_the_reverse() -> None:
    with pytest.raises(StructuredError):
        parse_integer("?1")
    with pytest.raises(StructuredError):
        parse_boolean("1")


@given(st.dictionaries(keys, st.integers(0, 10**15 - 1), max_size=4))
def test_an_integer_dictionary_serializes_to_members_a_reader_splits_back(members: dict[str, int]) -> None:
    text = serialize_integer_dictionary(members)
    parsed = dict(member.split("=") for member in text.split(", ")) if text else {}
    assert {k: int(v) for k, v in parsed.items()} == members


def test_a_dictionary_refuses_what_is_not_a_key_or_an_integer() -> None:
    with pytest.raises(StructuredError):
        serialize_integer_dictionary({"Max": 1})
    with pytest.raises(StructuredError):
        serialize_integer_dictionary({"max-size": 10**15})


# -- which protocol a request speaks ---------------------------------------------------------------


def test_the_interop_version_field_makes_a_draft_request() -> None:
    assert d.protocol_of({"upload-draft-interop-version": "8"}) == d.DRAFT
    assert d.protocol_of({"upload-draft-interop-version": "banana"}) == d.DRAFT
    assert d.protocol_of({"tus-resumable": "1.0.0"}) == d.TUS
    assert d.protocol_of({}) == d.TUS


def test_the_draft_request_of_this_interop_version_is_taken() -> None:
    d.check_draft_request("8", False)
    d.check_draft_request(" 8;x=1", False)


@pytest.mark.parametrize(
    ("version", "tus", "says"),
    [
        ("7", False, "7 is not supported: this server speaks interop version 8"),
        ("9", False, "9 is not supported"),
        ("v8", False, "must be an Integer"),
        ("", False, "must be an Integer"),
        ("8, 7", False, "must be an Integer"),
        ("8", True, "not both"),
    ],
)
def test_other_draft_requests_are_refused_clearly(version: str, tus: bool, says: str) -> None:
    with pytest.raises(TusError) as refused:
        d.check_draft_request(version, tus)
    assert refused.value.status == 400
    assert says in refused.value.reason


# -- fields ------------------------------------------------------------------------------------------


@given(st.booleans())
def test_upload_complete_round_trips(value: bool) -> None:
    assert d.parse_flag(d.format_flag(value)) is value


@pytest.mark.parametrize("value", [None, "", "1", "true", "?", "?1?0", "?1, ?0"])
def test_an_upload_complete_that_is_not_a_boolean_is_ignored(value: str | None) -> None:
    assert d.parse_flag(value) is None


@given(st.integers(0, 10**15 - 1), parameters)
def test_sizes_are_non_negative_integers(value: int, params: str) -> None:
    assert d.parse_size(f"{value}{params}") == value


@pytest.mark.parametrize("value", [None, "-1", "1.0", "?1", "1e3", "0x10", "1000000000000000", '"5"'])
def test_other_sizes_are_ignored(value: str | None) -> None:
    assert d.parse_size(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/partial-upload", True),
        ("Application/Partial-Upload; x=1", True),
        ("application/offset+octet-stream", False),
        (None, False),
    ],
)
def test_the_append_media_type(value: str | None, expected: bool) -> None:
    assert d.is_partial_upload(value) is expected


def test_content_is_known_from_its_framing() -> None:
    assert d.may_carry_content(3, None)
    assert not d.may_carry_content(0, "chunked")
    assert d.may_carry_content(None, "chunked")
    assert not d.may_carry_content(None, None)


@given(st.one_of(st.none(), st.integers(0, 10**12)), st.one_of(st.none(), st.integers(-(10**6), 10**9)))
def test_upload_limit_names_what_applies(max_size: int | None, max_age: int | None) -> None:
    value = d.upload_limit(max_size, max_age)
    if max_size is None and max_age is None:
        assert value is None
        return
    assert value is not None
    members = {k: int(v) for k, v in (m.split("=") for m in value.split(", "))}
    assert members.get("max-size") == max_size
    assert members.get("max-age") == (None if max_age is None else max(0, max_age))


# -- the upload's length ------------------------------------------------------------------------------


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_a_completing_request_announces_offset_plus_content(offset: int, content: int) -> None:
    assert d.announced_length(None, True, content, offset) == offset + content
    assert d.announced_length(offset + content, True, content, offset) == offset + content


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_upload_length_alone_announces_itself(length: int, content: int, offset: int) -> None:
    assert d.announced_length(length, False, content, offset) == length
    assert d.announced_length(None, False, content, offset) is None
    assert d.announced_length(None, True, None, offset) is None


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(1, 10**9))
def test_two_indicators_that_disagree_are_inconsistent(offset: int, content: int, delta: int) -> None:
    with pytest.raises(d.DraftError) as refused:
        d.announced_length(offset + content + delta, True, content, offset)
    assert refused.value.status == 400
    assert refused.value.problem is d.INCONSISTENT_LENGTH


@given(st.one_of(st.none(), st.integers(0, 100)), st.integers(0, 100), st.integers(0, 100))
def test_a_length_is_recorded_once_and_never_contradicted(known: int | None, announced: int, offset: int) -> None:
    try:
        recorded = d.length_to_record(known, announced, offset)
    except d.DraftError as refused:
        assert refused.problem is d.INCONSISTENT_LENGTH
        assert (known is not None and announced != known) or (known is None and announced < offset)
        return
    assert recorded == (announced if known is None else None)
    assert d.length_to_record(known, None, offset) is None


# -- problem details ---------------------------------------------------------------------------------------


@given(st.integers(0, 10**15 - 1), st.integers(0, 10**15 - 1))
def test_a_mismatching_offset_tells_both_offsets(expected: int, provided: int) -> None:
    error = d.mismatching_offset(expected, provided)
    assert error.status == 409
    assert error.headers == {"Upload-Offset": str(expected)}
    document = json.loads(d.problem_document(error.status, error.reason, error.problem, error.members))
    assert document["type"] == "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    assert document["expected-offset"] == expected
    assert document["provided-offset"] == provided
    assert document["status"] == 409


def test_the_draft_problem_types_are_the_registered_ones() -> None:
    assert d.completed_upload().problem.uri == "https://iana.org/assignments/http-problem-types#completed-upload"
    assert d.completed_upload().status == 400
    assert d.inconsistent_length("x").problem.uri.endswith("#inconsistent-upload-length")


@given(st.integers(100, 999), st.text(max_size=40))
def test_any_other_refusal_is_an_about_blank_problem(status: int, reason: str) -> None:
    document = json.loads(d.problem_document(status, reason))
    assert document["type"] == "about:blank"
    assert document["status"] == status
    assert document["detail"] == reason
    assert isinstance(document["title"], str) and document["title"]


# -- representation metadata ---------------------------------------------------------------------------------

filenames = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=20)


@given(filenames)
def test_a_quoted_filename_is_read_back(name: str) -> None:
    assert d.representation_metadata(None, f"inline; filename={sf_string(name)}") == {"filename": name}


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))
def test_an_encoded_filename_wins_and_is_decoded(name: str) -> None:
    value = f"inline; filename=\"fallback\"; filename*=UTF-8''{quote(name, safe='')}"
    assert d.representation_metadata(None, value) == {"filename": name}


@given(st.text(max_size=60), st.text(max_size=60))
def test_representation_metadata_never_fails(content_type: str, disposition: str) -> None:
    metadata = d.representation_metadata(content_type, disposition)
    assert set(metadata) <= {"filetype", "filename"}


@pytest.mark.parametrize(
    ("content_type", "disposition", "expected"),
    [
        ("Video/MP4; codecs=x", None, {"filetype": "video/mp4"}),
        ("application/partial-upload", None, {}),
        ("not a type", None, {}),
        (None, "attachment; filename=report.pdf", {"filename": "report.pdf"}),
        (None, 'inline; filename="a\\"b.txt"', {"filename": 'a"b.txt'}),
        (None, "inline; filename*=utf-8''%E2%82%AC%20rates.txt", {"filename": "\u20ac rates.txt"}),
        (None, "inline; filename*=UTF-8''%FF", {}),
        (None, 'inline; filename="line\\\nbreak"', {}),
        (None, "inline; filename=", {}),
        (None, "inline", {}),
        (None, ";;;", {}),
    ],
)
def test_representation_metadata_examples(
    content_type: str | None, disposition: str | None, expected: dict[str, str]
) -> None:
    assert d.representation_metadata(content_type, disposition) == expected
