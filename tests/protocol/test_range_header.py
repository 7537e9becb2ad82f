"""Range requests for downloads."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.protocol import TusError, parse_range

SIZE = 10


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-", (0, 9)),
        ("bytes=0-0", (0, 0)),
        ("bytes=2-5", (2, 5)),
        ("bytes=9-", (9, 9)),
        ("bytes=3-100", (3, 9)),  # a last position past the end is clamped
        ("bytes=-5", (5, 9)),
        ("bytes=-100", (0, 9)),
        (" bytes=1-2 ", (1, 2)),
    ],
)
def test_satisfiable_ranges(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=5-2",  # last before first: syntactically invalid, so ignored
        "bytes=-",
        "bytes=0-1,3-4",  # several ranges: the whole body is sent
        "items=0-1",
        "bytes=a-b",
        "bytes=" + "1" * 20 + "-",
    ],
)
def test_ignored_ranges_mean_whole_body(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=100-200", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0)]
)
def test_unsatisfiable_ranges_are_416(header: str, size: int) -> None:
    with pytest.raises(TusError) as caught:
        parse_range(header, size)
    assert caught.value.status == 416
    assert caught.value.headers == {"Content-Range": f"bytes */{size}"}


@given(st.text(), st.integers(min_value=0, max_value=2**63 - 1))
def test_arbitrary_text_raises_only_416(header: str, size: int) -> None:
    check(header, size)


@given(
    st.from_regex(r"bytes=[0-9]{0,20}-[0-9]{0,20}", fullmatch=True),
    st.integers(min_value=0, max_value=2**63 - 1),
)
def test_range_shaped_text_stays_within_the_body(header: str, size: int) -> None:
    check(header, size)


def check(header: str, size: int) -> None:
    try:
        result = parse_range(header, size)
    except TusError as error:
        assert error.status == 416
        assert error.headers["Content-Range"] == f"bytes */{size}"
    else:
        if result is not None:
            first, last = result
            assert 0 <= first <= last < size
