"""Decimals are ASCII: full-width, Arabic-Indic and other Unicode digits or spaces are refused."""

from __future__ import annotations

import unicodedata
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.decimals import DecimalFormatError, parse_caller_decimal, parse_decimal
from gateway.core.validation import OrderDraft, validate_order
from gateway.errors import ValidationError

# Every one of these is a digit to Decimal() and str.isdigit(); none is a digit on ALP's wire.
_LOOKALIKES = [
    "１",  # FULLWIDTH DIGIT ONE
    "١٠",  # ARABIC-INDIC ONE ZERO
    "۱.۵",  # EXTENDED ARABIC-INDIC
    "१२",  # DEVANAGARI
    "1٠",  # ASCII then Arabic-Indic
    "0.１",
    "－1",  # FULLWIDTH HYPHEN-MINUS
    "1．5",  # FULLWIDTH FULL STOP
    "\u00a01.5",  # NO-BREAK SPACE, which str.strip() removes
    "1.5\u3000",  # IDEOGRAPHIC SPACE
    "𝟏",  # MATHEMATICAL BOLD DIGIT ONE
]


@pytest.mark.parametrize("text", _LOOKALIKES)
def test_caller_decimal_refuses_unicode_digits(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_caller_decimal(text)


@pytest.mark.parametrize("text", [*_LOOKALIKES, "١e5", "1e١"])
def test_upstream_decimal_refuses_unicode_digits(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_decimal(text)


def _limit_order(amount: str, price: str) -> OrderDraft:
    return OrderDraft(
        pair="BTC_USDT",
        side="BUY",
        wallet_type="",
        kind="limit",
        base_amount=amount,
        quote_amount=None,
        limit_price=price,
        stop_price=None,
        stop_operator=None,
        client_order_id=None,
        post_only=False,
    )


def test_order_with_unicode_digits_is_refused_naming_both_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_order(_limit_order("１", "٢٠٠٠٠"), None)
    fields = [field for field, _ in caught.value.violations]
    assert fields == ["limit.base_amount", "limit.limit_price"]


def test_order_with_ascii_digits_still_validates() -> None:
    spec = validate_order(_limit_order("0.01", "20000"), None)
    assert (spec.base_amount, spec.limit_price) == (Decimal("0.01"), Decimal("20000"))


_plain = st.decimals(
    allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12
).map(lambda d: format(d, "f"))
_non_ascii = st.characters(min_codepoint=0x80)
_unicode_digit = st.characters(categories=["Nd"], min_codepoint=0x80)


@st.composite
def _tainted(draw: st.DrawFn) -> str:
    """A valid plain decimal with one non-ASCII character inserted or one digit swapped for a
    non-ASCII digit of the same value, so the rest of the grammar is satisfied."""
    text = draw(_plain)
    index = draw(st.integers(min_value=0, max_value=len(text)))
    if draw(st.booleans()):
        return text[:index] + draw(_non_ascii) + text[index:]
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    at = draw(st.sampled_from(digits))
    value = int(text[at])
    lookalike = draw(_unicode_digit.filter(lambda c: unicodedata.decimal(c, -1) == value))
    return text[:at] + lookalike + text[at + 1 :]


@settings(max_examples=300, deadline=None)
@given(st.one_of(_tainted(), st.text(min_size=1, max_size=30).filter(lambda t: not t.isascii())))
def test_any_non_ascii_text_is_refused(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_caller_decimal(text)
    with pytest.raises(DecimalFormatError):
        parse_decimal(text)
