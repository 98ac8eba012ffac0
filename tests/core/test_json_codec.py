"""Exact JSON: Decimal fractions, int integers, refused non-finite and invalid input, float-free bodies."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.json_codec import dumps_body, loads_exact
from gateway.errors import UpstreamProtocolError


def test_fractions_are_decimal_and_integers_are_int() -> None:
    payload = loads_exact(b'{"price": 45000.5, "count": 7, "tiny": 1e-8, "neg": -0.1}')
    assert payload["price"] == Decimal("45000.5") and isinstance(payload["price"], Decimal)
    assert payload["count"] == 7 and type(payload["count"]) is int
    assert payload["tiny"] == Decimal("1E-8") and isinstance(payload["tiny"], Decimal)
    assert str(payload["neg"]) == "-0.1"


def test_accepts_str_input() -> None:
    assert loads_exact('"a.jwt.token"') == "a.jwt.token"


@pytest.mark.parametrize(
    "bad",
    [b"NaN", b"Infinity", b"-Infinity", b'{"a": NaN}', b"[Infinity]", b"{", b"", b"nope", b"[1,]"],
)
def test_refuses_non_finite_and_invalid(bad: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        loads_exact(bad)


def test_refuses_deep_nesting_as_protocol_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        loads_exact("[" * 100_000 + "]" * 100_000)


def test_refuses_invalid_utf8() -> None:
    with pytest.raises(UpstreamProtocolError):
        loads_exact(b'"\xff\xfe"')


def test_dumps_body_is_compact_in_key_order() -> None:
    body = dumps_body({"pair": "BTC_USDT", "order_ids": [1, 2], "all": True, "x": None})
    assert body == b'{"pair":"BTC_USDT","order_ids":[1,2],"all":true,"x":null}'
    assert dumps_body({"b": "1", "a": "2"}) == b'{"b":"1","a":"2"}'


def test_dumps_body_keeps_unicode_as_utf8() -> None:
    assert dumps_body({"n": "é"}) == '{"n":"é"}'.encode()


@pytest.mark.parametrize("value", [Decimal("1.5"), 1.5, float("nan")])
def test_dumps_body_refuses_decimal_and_float(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        dumps_body({"amount": value})


def test_dumps_body_refuses_float_with_type_error() -> None:
    # allow_nan=False only catches non-finite floats; ordinary floats must be refused too.
    with pytest.raises(TypeError):
        dumps_body({"amount": 0.1})


_json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json, max_size=5))
def test_dumps_then_loads_round_trips(obj: dict[str, object]) -> None:
    assert loads_exact(dumps_body(obj)) == obj


@settings(max_examples=100, deadline=None)
@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=8, max_value=10**12, min_value=-(10**12)
    )
)
def test_number_text_parses_exactly(value: Decimal) -> None:
    text = format(value, "f")
    parsed = loads_exact(text)
    assert parsed == value
    if "." not in text:
        assert type(parsed) is int


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    with contextlib.suppress(UpstreamProtocolError):
        loads_exact(data)
