"""The asset `language` hint: ISO 639-1 codes only, lowercased, checked against the real list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tusd_py.assets.languages import iso_639_1_codes, normalize_language


@pytest.mark.parametrize(
    "value, expected",
    [("de", "de"), ("DE", "de"), ("En", "en"), ("zu", "zu"), ("ka", "ka"), (None, None)],
)
def test_normalize_language_accepts_codes_in_any_case_and_null(value: str | None, expected: str | None) -> None:
    assert normalize_language(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "xx",  # two letters, no language
        "qq",
        "deu",  # ISO 639-2/3, not 639-1
        "ger",
        "d",
        "",
        " de",  # spaces are refused, not stripped
        "de ",
        "d e",
        "de-DE",  # a locale is not a language code
        "d1",
        "\u212aa",  # the Kelvin sign lowercases to an ASCII "k"
        "éé",
    ],
)
def test_normalize_language_refuses_what_is_not_an_iso_639_1_code(value: str) -> None:
    with pytest.raises(ValueError, match="language"):
        normalize_language(value)


@pytest.mark.parametrize("value", [1, 1.5, True, b"de", ["de"], {"code": "de"}])
def test_normalize_language_refuses_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="string or null"):
        normalize_language(value)


def test_the_code_list_is_the_real_iso_639_1_list() -> None:
    codes = iso_639_1_codes()
    # ISO 639-1 has 183/184 codes depending on edition; pycountry tracks the current one.
    assert 180 <= len(codes) <= 190
    assert {"de", "en", "fr", "ja", "zh", "sw"} <= codes
    assert all(len(code) == 2 and code.isascii() and code.islower() for code in codes)
    assert all(normalize_language(code.upper()) == code for code in codes)


@given(st.text(max_size=4))
def test_normalize_language_answers_a_listed_code_or_value_error(value: str) -> None:
    try:
        result = normalize_language(value)
    except ValueError:
        return
    assert result in iso_639_1_codes()
    assert result == value.lower()
