"""Exact money parsing and rendering: known answers, strict caller strings, round-trip properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.decimals import (
    MAX_DIGITS,
    DecimalFormatError,
    decimal_places,
    format_decimal,
    parse_caller_decimal,
    parse_decimal,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1E-8"), "0.00000001"),
        (Decimal("0.1"), "0.1"),
        (Decimal("1E+3"), "1000"),
        (Decimal("45000.50"), "45000.50"),
        (Decimal("-0"), "0"),
        (Decimal("-0.000"), "0.000"),
        (Decimal("-1.5"), "-1.5"),
        (Decimal(7), "7"),
    ],
)
def test_format_decimal_known_answers(value: Decimal, text: str) -> None:
    assert format_decimal(value) == text


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_format_decimal_refuses_non_finite(value: Decimal) -> None:
    with pytest.raises(DecimalFormatError):
        format_decimal(value)


@pytest.mark.parametrize(
    "bad", ["1e5", "NaN", "", "-", "+", ".", "1.2.3", "0x10", "1,5", "Infinity", " "]
)
def test_parse_caller_decimal_refuses(bad: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_caller_decimal(bad)


def test_parse_caller_decimal_digit_bound() -> None:
    assert parse_caller_decimal("9" * MAX_DIGITS) == Decimal("9" * MAX_DIGITS)
    with pytest.raises(DecimalFormatError):
        parse_caller_decimal("1" * 41)
    with pytest.raises(DecimalFormatError):
        parse_caller_decimal("0." + "1" * 40)


@pytest.mark.parametrize(
    ("text", "value"),
    [("1.5", "1.5"), (" 2 ", "2"), ("-0.25", "-0.25"), (".5", "0.5"), ("3.", "3")],
)
def test_parse_caller_decimal_accepts_plain(text: str, value: str) -> None:
    assert parse_caller_decimal(text) == Decimal(value)


def test_parse_decimal_accepts_upstream_shapes() -> None:
    assert parse_decimal(Decimal("0.1")) == Decimal("0.1")
    assert parse_decimal(7) == Decimal(7)
    assert parse_decimal("45000.5") == Decimal("45000.5")
    assert parse_decimal("1e-8") == Decimal("1E-8")


@pytest.mark.parametrize(
    "bad", [True, False, 0.1, None, [], "NaN", "abc", Decimal("NaN"), Decimal("Inf"), "1e9999"]
)
def test_parse_decimal_refuses(bad: object) -> None:
    with pytest.raises(DecimalFormatError):
        parse_decimal(bad)


@pytest.mark.parametrize(
    ("value", "places"), [("1.500", 1), ("100", 0), ("0.00000001", 8), ("1E+2", 0)]
)
def test_decimal_places(value: str, places: int) -> None:
    assert decimal_places(Decimal(value)) == places


_finite = st.decimals(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(_finite)
def test_format_round_trips_without_exponent(value: Decimal) -> None:
    text = format_decimal(value)
    assert "E" not in text and "e" not in text
    assert Decimal(text) == value
    assert parse_decimal(text) == value


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=12, min_value=-(10**20), max_value=10**20
    )
)
def test_caller_round_trip(value: Decimal) -> None:
    assert parse_caller_decimal(format_decimal(value)) == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=50))
def test_parse_caller_decimal_raises_only_format_error(text: str) -> None:
    try:
        result = parse_caller_decimal(text)
    except DecimalFormatError:
        return
    assert result.is_finite()
