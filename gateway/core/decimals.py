"""Exact money: parse upstream numbers and caller strings into Decimal, render without exponent."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

# A plain decimal as callers and ALP's WS frames write it: optional sign, digits, optional fraction.
# [0-9], never \d: \d, str.isdigit() and Decimal() all accept "１" and "١٠", which are not numbers
# on ALP's wire; text is also checked isascii() before strip(), which removes Unicode spaces.
_DECIMAL_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_EXPONENT_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]{1,3}")
MAX_DIGITS: Final = 40


class DecimalFormatError(ValueError):
    """A value is not an exact, finite decimal."""


def parse_decimal(value: object) -> Decimal:
    """Decimal from a JSON number already parsed as Decimal/int, or from decimal text.

    Floats and booleans are refused: a float has already lost exactness.
    """
    if isinstance(value, bool):
        raise DecimalFormatError("boolean is not a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not value.isascii() or (
            not _DECIMAL_TEXT.fullmatch(text) and not _EXPONENT_TEXT.fullmatch(text)
        ):
            raise DecimalFormatError(f"not a decimal number: {value[:40]!r}")
        try:
            result = Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - regex admits only valid text
            raise DecimalFormatError(f"not a decimal number: {value[:40]!r}") from exc
    else:
        raise DecimalFormatError(f"expected a decimal, got {type(value).__name__}")
    if not result.is_finite():
        raise DecimalFormatError("not a finite number")
    return result


def parse_caller_decimal(text: str) -> Decimal:
    """Strict parse of a caller-supplied decimal string: plain notation, no exponent, bounded size."""
    stripped = text.strip()
    if not text.isascii() or not _DECIMAL_TEXT.fullmatch(stripped):
        raise DecimalFormatError('must be a plain decimal string of ASCII digits such as "1.5"')
    if len(stripped.lstrip("+-").replace(".", "")) > MAX_DIGITS:
        raise DecimalFormatError(f"more than {MAX_DIGITS} digits")
    return Decimal(stripped)


def format_decimal(value: Decimal) -> str:
    """Render without exponent and without float noise: 1E-8 -> "0.00000001", 0.1 -> "0.1"."""
    text = str(value)  # 3x faster than format(); plain unless an exponent is needed
    if "E" in text or "N" in text or "n" in text:
        if not value.is_finite():
            raise DecimalFormatError("not a finite number")
        text = format(value, "f")
    if text[0] == "-" and value == 0:
        text = text[1:]
    return text


def decimal_places(value: Decimal) -> int:
    """Digits after the point that carry information (trailing zeros do not count). Exact at any
    length: `normalize()` would round to the context's 28 digits first and call
    "20000.000...0001" (30 digits) a whole number."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing)) if any(digits) else 0
