"""REST side of the core: signing, exact JSON, parsers on the docs' payloads, requests, validation."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from decimal import Decimal

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import constants, rest_parsing, rest_requests
from gateway.core.decimals import DecimalFormatError, format_decimal, parse_caller_decimal
from gateway.core.json_codec import dumps_body, loads_exact
from gateway.core.models import CancelResult, Pair
from gateway.core.signing import sign
from gateway.core.token_policy import Secret, needs_refresh, read_expiry
from gateway.core.validation import (
    CancelByIds,
    OrderDraft,
    validate_cancel,
    validate_order,
)
from gateway.errors import UpstreamProtocolError, ValidationError

D = Decimal


def test_signing_known_answer() -> None:
    # digests from `printf '%s' BODY | openssl dgst -sha256 -hmac SECRET`, not from hmac.new
    body = b'{"pair":"BTC_USDT"}'
    assert (
        sign(body, "secret") == "124ee9d472d1e9013688dc39b00470c782ed7ba4915749a122876fbbbe11a114"
    )
    assert sign(b"", "key") == "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"


@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_signing_matches_hmac(body: bytes, secret: str) -> None:
    assert sign(body, secret) == hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_exact_json() -> None:
    payload = loads_exact(b'{"a": 0.1, "b": 7, "c": 1e-8, "d": "x"}')
    assert payload == {"a": D("0.1"), "b": 7, "c": D("1e-8"), "d": "x"} and isinstance(
        payload["b"], int
    )
    for bad in (b"NaN", b'{"a": Infinity}', b"{", b""):
        with pytest.raises(UpstreamProtocolError):
            loads_exact(bad)
    assert (
        dumps_body({"pair": "X", "ids": [1], "all": True}) == b'{"pair":"X","ids":[1],"all":true}'
    )
    with pytest.raises(TypeError):
        dumps_body({"amount": D("1")})


@pytest.mark.parametrize(
    "value,text",
    [
        ("1E-8", "0.00000001"),
        ("0.1", "0.1"),
        ("45000.0", "45000.0"),
        ("-0.00", "0.00"),
        ("1E+3", "1000"),
    ],
)
def test_format_decimal(value: str, text: str) -> None:
    assert format_decimal(D(value)) == text


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_format_decimal_round_trips(value: Decimal) -> None:
    text = format_decimal(value)
    assert "E" not in text and "e" not in text and D(text) == value


@pytest.mark.parametrize(
    "text", ["1e5", "NaN", "", "-", " ", "1.2.3", "9" * 41, "0x10", "Infinity"]
)
def test_caller_decimals_refused(text: str) -> None:
    with pytest.raises(DecimalFormatError):
        parse_caller_decimal(text)


def test_spellings_normalise() -> None:
    assert constants.normalize_wallet_type("CROSS_MARGIN") is constants.WalletType.MARGIN_CROSS
    assert (
        constants.normalize_wallet_type("ISOLATED_MARGIN") is constants.WalletType.MARGIN_ISOLATED
    )
    assert constants.normalize_wallet_type("P2P") is None
    assert [constants.normalize_order_side(s) for s in ("BID", "ask", "buy", "SELL")] == [
        constants.OrderSide.BUY,
        constants.OrderSide.SELL,
        constants.OrderSide.BUY,
        constants.OrderSide.SELL,
    ]
    assert (
        constants.normalize_order_status("PARTIAL_CANCELLED")
        is constants.OrderStatus.PARTIAL_CANCELED
    )
    assert constants.normalize_order_status("EXPIRED") is constants.OrderStatus.EXPIRED
    assert constants.normalize_time_in_force("AON") is constants.TimeInForce.AON
    assert constants.normalize_chart_interval("1D") is constants.ChartInterval.ONE_DAY
    assert constants.normalize_withdrawal_status("CANCELED") is constants.WithdrawalStatus.CANCELED


DOCS = {
    "pairs": '[{"name": "BTC_USDT", "currency1": "BTC", "currency2": "USDT", "price_precision": 2, "amount_precision": 8, "minimum_order_size": 0.001, "maximum_order_size": 10.0, "minimum_order_value": 10.0}]',
    "ticker": '[{"pair": "BTC_USDT", "last": 45000.0, "open": 44990.0, "vol": 1000.0, "buy": 44990.0, "sell": 45010.0, "high": 45500.0, "low": 44500.0, "diff": 10.0, "diff_percent": 0.02, "price_precision": 2, "amount_precision": 8, "timestamp": 1630862400.0}]',
    "orders": '[{"id": 123, "account_id": 456, "pair": "BTC_USDT", "amount": 1.5, "price": 45000.0, "side": "BID", "status": "FILLED", "type": "LIMIT", "wallet_type": "SPOT", "amount_canceled": 0.0, "amount_filled": 1.5, "date": "2023-09-04T12:00:00Z", "open_at": "2023-09-04T11:59:00Z", "tif": "GTC", "updated_at": "2023-09-04T12:01:00Z", "done_at": null, "expire_after": null, "stop_price": null}]',
    "fees": '[{"account_id": 12345, "active_once": ["2023-09-04T12:00:00Z", "2023-09-05T12:00:00Z"], "taker_fee_rate": 0.002, "maker_fee_rate": 0.0015, "fee_currency": "USD", "priority": 1, "currency": null, "pair": null, "is_active": true}]',
    "trades": '[{"id": 293107798, "pair": "BTC_USDT", "side": "BUY", "price": 45000.0, "amount": 1.0, "fee": 0.005, "timestamp": 1630862400.123456, "order_id": 123456}]',
}


def test_docs_payloads_parse() -> None:
    (pair,) = rest_parsing.parse_pairs(loads_exact(DOCS["pairs"]))
    assert pair.minimum_order_size == D("0.001") and pair.price_precision == 2
    (ticker,) = rest_parsing.parse_tickers(loads_exact(DOCS["ticker"]))
    assert ticker.diff_percent == D("0.02") and ticker.timestamp == D("1630862400.0")
    single = rest_parsing.parse_tickers(loads_exact(DOCS["ticker"])[0] | {"timestamp": 0})
    assert single[0].timestamp is None  # a never-traded pair
    (order,) = rest_parsing.parse_orders(loads_exact(DOCS["orders"]))
    assert (
        order.side is constants.OrderSide.BUY and order.side_raw == "BID" and order.done_at is None
    )
    assert order.date is not None and order.date.tzinfo is not None and order.stop_price is None
    (fee,) = rest_parsing.parse_fee_rules(loads_exact(DOCS["fees"]))
    assert fee.maker_fee_rate == D("0.0015") and fee.currency is None and fee.active_to is not None
    (trade,) = rest_parsing.parse_account_trades(loads_exact(DOCS["trades"]))
    assert trade.timestamp == D("1630862400.123456") and trade.fee == D("0.005")
    assert rest_parsing.parse_place_order([34]) == [34] and rest_parsing.parse_place_order(35) == [
        35
    ]
    outcomes = rest_parsing.parse_cancel_result(
        {"1": "CANCELLED", "8": "order not found", "9": "weird"}
    )
    assert [o.outcome for o in outcomes] == [
        CancelResult.CANCELLED,
        CancelResult.NOT_FOUND,
        CancelResult.OTHER,
    ]
    assert rest_parsing.parse_server_time({"serverTime": 1630862400}).server_time == 1630862400


def test_error_bodies() -> None:
    err = rest_parsing.parse_error_body(
        400, b'{"code": 1003, "message": "invalid order amount"}', None
    )
    assert (err.code, err.message) == ("1003", "invalid order amount")
    html = rest_parsing.parse_error_body(502, b"<html>bad gateway</html>", None)
    assert html.code == "" and "bad gateway" in html.message
    assert rest_parsing.parse_error_body(503, b"", "2").retry_after == 2
    assert rest_parsing.parse_error_body(429, b"", "soon").retry_after is None


PARSERS = [
    f
    for n, f in vars(rest_parsing).items()
    if n.startswith("parse_") and n != "parse_error_body" and f.__module__ == rest_parsing.__name__
]
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.decimals(allow_nan=True, places=3),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "pair", "price", "amount", "name", "balance", "x"]),
            inner,
            max_size=6,
        )
    ),
    max_leaves=15,
)


@settings(max_examples=300)
@given(st.sampled_from(PARSERS), JSONISH)
def test_parsers_only_raise_protocol_errors(parser: object, payload: object) -> None:
    with contextlib.suppress(UpstreamProtocolError):
        parser(payload)  # type: ignore[operator]


def test_place_order_body_is_exact_and_ordered() -> None:
    draft = OrderDraft(
        "BTC_USDT", "BUY", "", "stop_limit", "0.5", None, "45000.10", "44000", "GTE", "cid-1", False
    )
    spec = validate_order(draft, None)
    request = rest_requests.place_order(spec)
    body = json.loads(request.body or b"")
    assert list(body) == [
        "pair",
        "order_type",
        "order_side",
        "wallet_type",
        "base_amount",
        "limit_price",
        "stop_price",
        "stop_operator",
        "client_order_id",
    ]
    assert body["base_amount"] == "0.5" and body["limit_price"] == "45000.10"
    assert request.signed and request.private and not request.idempotent
    margin = validate_order(
        OrderDraft(
            "BTC_USDT", "SELL", "MARGIN_CROSS", "market", "1", None, None, None, None, None, False
        ),
        None,
    )
    assert (
        json.loads(rest_requests.place_order(margin, wallet_spelling="alias").body or b"")[
            "wallet_type"
        ]
        == "CROSS_MARGIN"
    )
    cancel = rest_requests.cancel_orders(validate_cancel("order_ids", [3, 1], ""))
    assert cancel.body == b'{"order_ids":[3,1]}' and cancel.method == "DELETE"
    assert rest_requests.accounts(include_subaccounts=True).query == (("include_subaccounts", "1"),)
    assert "demo-secret" not in repr(rest_requests.auth("demo-key", "demo-secret"))


RULES = Pair("BTC_USDT", "BTC", "USDT", 2, 6, D("0.0001"), D("100"), D("5"))


@pytest.mark.parametrize(
    "draft,fields",
    [
        (
            OrderDraft("", "", "", "", None, None, None, None, None, None, False),
            {"pair", "side", "order"},
        ),
        (
            OrderDraft("BTC_USDT", "BUY", "", "limit", "0.1", None, None, None, None, None, False),
            {"limit.limit_price"},
        ),
        (
            OrderDraft("BTC_USDT", "BUY", "", "limit", "-1", None, "1e3", None, None, None, False),
            {"limit.base_amount", "limit.limit_price"},
        ),
        (
            OrderDraft("BTC_USDT", "BUY", "", "market", "1", None, None, None, None, None, False),
            {"market.quote_amount", "market.base_amount"},
        ),
        (
            OrderDraft(
                "BTC_USDT", "SELL", "", "stop_market", "1", None, None, "100", "", None, False
            ),
            {"stop_market.stop_operator"},
        ),
        (
            OrderDraft(
                "BTC_USDT", "BUY", "", "limit", "0.1234567", None, "1.001", None, None, None, False
            ),
            {"limit.base_amount", "limit.limit_price"},
        ),
        (
            OrderDraft(
                "BTC_USDT", "BUY", "", "limit", "0.0001", None, "1", None, None, None, False
            ),
            {"limit.base_amount"},
        ),
        (
            OrderDraft(
                "BTC_USDT", "BUY", "", "limit", "0.1", None, "30000", None, None, "has space", False
            ),
            {"client_order_id"},
        ),
    ],
)
def test_validation_names_every_field(draft: OrderDraft, fields: set[str]) -> None:
    with pytest.raises(ValidationError) as info:
        validate_order(draft, RULES)
    assert {f for f, _ in info.value.violations} == fields


TEXTS = st.one_of(
    st.none(), st.text(max_size=10), st.from_regex(r"[0-9]{1,4}(\.[0-9]{1,8})?", fullmatch=True)
)


@settings(max_examples=300)
@given(
    st.builds(
        OrderDraft,
        st.sampled_from(["BTC_USDT", "btc", ""]),
        st.sampled_from(["BUY", "SELL", ""]),
        st.sampled_from(["", "SPOT", "X"]),
        st.sampled_from(["limit", "market", "stop_limit", "stop_market", ""]),
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        st.sampled_from([None, "", "GTE", "LTE", "EQ"]),
        st.none(),
        st.booleans(),
    )
)
def test_accepted_orders_respect_the_rules(draft: OrderDraft) -> None:
    try:
        spec = validate_order(draft, RULES)
    except ValidationError:
        return
    if spec.base_amount is not None:
        assert RULES.minimum_order_size <= spec.base_amount <= RULES.maximum_order_size
    for price in (spec.limit_price, spec.stop_price):
        assert price is None or (price > 0 and -price.as_tuple().exponent <= 2)  # type: ignore[operator]


def test_cancel_validation() -> None:
    assert validate_cancel("order_ids", [1, 2], "") == CancelByIds((1, 2))
    for kind, ids, pair, field in (
        ("", [], "", "target"),
        ("order_ids", [1, 1], "", "order_ids.ids"),
        ("order_ids", [0], "", "order_ids.ids"),
        ("pair", [], "x", "pair"),
        ("order_ids", list(range(1, 1002)), "", "order_ids.ids"),
    ):
        with pytest.raises(ValidationError) as info:
            validate_cancel(kind, ids, pair)
        assert info.value.field == field


def test_token_policy() -> None:
    token = jwt.encode({"exp": 2_000_000_000}, "k" * 32, algorithm="HS256")
    assert read_expiry(token) == 2_000_000_000
    with pytest.raises(UpstreamProtocolError):
        read_expiry(jwt.encode({"sub": "1"}, "k" * 32, algorithm="HS256"))
    with pytest.raises(UpstreamProtocolError):
        read_expiry("not-a-jwt")
    assert (
        needs_refresh(100, None, 10) and needs_refresh(95, 100, 5) and not needs_refresh(94, 100, 5)
    )
    secret = Secret("hunter2")
    assert (
        "hunter2" not in f"{secret} {secret!r} {[secret]} {secret:>20}"
        and secret.reveal() == "hunter2"
    )


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("3600", rest_parsing.MAX_RETRY_AFTER_S),  # capped: a pool never stops for an hour
        ("Infinity", None),
        ("1e9", None),
        ("-5", None),
        ("NaN", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # the caller's default pause applies
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_delay_seconds_capped(header: str | None, seconds: float | None) -> None:
    assert rest_parsing.retry_after_of(header) == seconds
