"""Structured Field Values (RFC 9651), as far as the resumable uploads draft needs them.

The draft's request fields are Items whose value is an Integer or a Boolean; an Item may
carry parameters, which are parsed (so that a field with them is still understood) and
then ignored. Responses need Integers, Booleans and a Dictionary of Integers. A value
that does not parse raises StructuredError; the draft then ignores the whole field.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

BareItem = int | float | str | bytes | bool


class StructuredError(ValueError):
    """The text is not a Structured Field value of the expected shape."""


_DIGITS = "0123456789"
_INTEGER = re.compile(r"-?[0-9]{1,15}")
_DECIMAL = re.compile(r"-?[0-9]{1,12}\.[0-9]{1,3}")
_NUMBER = re.compile(r"-?[0-9][0-9.]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")
_STRING_CHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def bare_item(self) -> BareItem:
        char = self.peek()
        if not char:
            raise StructuredError("a value is missing")
        if char == "-" or char in _DIGITS:
            return self.number()
        if char == '"':
            return self.string()
        if char == ":":
            return self.byte_sequence()
        if char == "?":
            return self.boolean()
        if char == "@":
            self.pos += 1
            date = self.number()
            if not isinstance(date, int):
                raise StructuredError("a Date is an integer number of seconds")
            return date
        if (char.isascii() and char.isalpha()) or char == "*":
            return self.match(_TOKEN, "a Token")
        raise StructuredError(f"no Structured Field value starts with {char!r}")

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise StructuredError(f"expected {what}")
        self.pos = found.end()
        return found.group()

    def number(self) -> int | float:
        found = _NUMBER.match(self.text, self.pos)
        raw = found.group() if found else ""
        if _INTEGER.fullmatch(raw):
            self.pos += len(raw)
            return int(raw)
        if _DECIMAL.fullmatch(raw):
            self.pos += len(raw)
            return float(raw)
        raise StructuredError("not an Integer or Decimal within RFC 9651's limits")

    def string(self) -> str:
        self.pos += 1
        parts: list[str] = []
        while True:
            chunk = _STRING_CHAR.match(self.text, self.pos)
            if chunk is not None:
                parts.append(chunk.group())
                self.pos = chunk.end()
            char = self.peek()
            self.pos += 1
            if char == '"':
                return "".join(parts)
            if char == "\\" and self.peek() in ('"', "\\"):
                parts.append(self.peek())
                self.pos += 1
                continue
            raise StructuredError("unterminated or invalid String")

    def byte_sequence(self) -> bytes:
        raw = self.match(_BYTES, "a Byte Sequence")[1:-1]
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise StructuredError("invalid base64 in a Byte Sequence") from None

    def boolean(self) -> bool:
        value = self.text[self.pos : self.pos + 2]
        if value not in ("?0", "?1"):
            raise StructuredError("a Boolean is ?0 or ?1")
        self.pos += 2
        return value == "?1"

    def parameters(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip_spaces()
            key = self.match(_KEY, "a parameter key")
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[key] = value
        return params


def parse_item(text: str) -> tuple[BareItem, dict[str, BareItem]]:
    """An Item field value: its bare value and its parameters."""
    parser = _Parser(text)
    parser.skip_spaces()
    value = parser.bare_item()
    params = parser.parameters()
    parser.skip_spaces()
    if parser.pos != len(text):
        raise StructuredError("unexpected text after the Item")
    return value, params


def parse_integer(text: str) -> int:
    value, _ = parse_item(text)
    # bool is an int in Python: a Boolean is not an Integer.
    if not isinstance(value, int) or isinstance(value, bool):
        raise StructuredError("not an Integer")
    return value


def parse_boolean(text: str) -> bool:
    value, _ = parse_item(text)
    if not isinstance(value, bool):
        raise StructuredError("not a Boolean")
    return value


def serialize_boolean(value: bool) -> str:
    return "?1" if value else "?0"


def serialize_integer(value: int) -> str:
    if not _INTEGER.fullmatch(str(value)):
        raise StructuredError("an Integer has at most 15 digits")
    return str(value)


def serialize_integer_dictionary(members: Mapping[str, int]) -> str:
    for key in members:
        if not _KEY.fullmatch(key):
            raise StructuredError(f"{key!r} is not a Dictionary key")
    return ", ".join(f"{key}={serialize_integer(value)}" for key, value in members.items())
