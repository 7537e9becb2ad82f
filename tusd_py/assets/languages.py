"""The `language` hint of an asset: an ISO 639-1 code, checked against the real list."""

from __future__ import annotations

from functools import cache

import pycountry

__all__ = ["iso_639_1_codes", "normalize_language"]


@cache
def iso_639_1_codes() -> frozenset[str]:
    """Every ISO 639-1 (two-letter) language code, from pycountry's copy of ISO 639-3.

    Loaded on first use: pycountry parses its JSON database lazily, and most processes
    never validate a language.
    """
    return frozenset(code for language in pycountry.languages if (code := getattr(language, "alpha_2", None)))


def normalize_language(value: object) -> str | None:
    """None stays None (auto-detect); a string becomes its lowercase ISO 639-1 code.

    Raises ValueError for anything else: not a string, surrounding spaces, three-letter
    codes ("deu"), and two letters that name no language ("xx").
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"language must be a string or null, not {type(value).__name__}")
    # ASCII is checked before lowercasing: str.lower maps some non-ASCII letters to ASCII
    # ("\u212a", the Kelvin sign, becomes "k").
    code = value.lower()
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ValueError(f"language must be a two-letter ISO 639-1 code (like 'de' or 'en'), not {value!r}")
    if code not in iso_639_1_codes():
        raise ValueError(f"language {value!r} is not an ISO 639-1 code")
    return code
