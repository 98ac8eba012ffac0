"""REST parsers on the docs' example payloads, the API-NOTES quirks, and robustness on arbitrary JSON."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import constants, models
from gateway.core import rest_parsing as rp
from gateway.core.json_codec import loads_exact
from gateway.errors import UpstreamProtocolError

D = Decimal


def _load(text: str) -> object:
    return loads_exact(text)


def test_server_time() -> None:
    assert rp.parse_server_time(_load('{"serverTime": 1630862400}')).server_time == D(1630862400)


def test_currency_rates() -> None:
    rates = rp.parse_currency_rates(
        _load('{"BTC": "45000.00000000", "ETH": "1632.69000000", "USDT": "1.00000000"}')
    )
    assert rates == [
        models.CurrencyRate("BTC", D("45000.00000000")),
        models.CurrencyRate("ETH", D("1632.69000000")),
        models.CurrencyRate("USDT", D("1.00000000")),
    ]


def test_currencies() -> None:
    assert rp.parse_currencies(_load('[{"short_name": "BTC", "sign": "BTC"}]')) == [
        models.Currency("BTC", "BTC")
    ]


def test_pairs() -> None:
    payload = _load(
        """[{"name": "BTC_USDT", "currency1": "BTC", "currency2": "USDT", "price_precision": 2,
        "amount_precision": 8, "minimum_order_size": 0.001, "maximum_order_size": 10.0,
        "minimum_order_value": 10.0}]"""
    )
    assert rp.parse_pairs(payload) == [
        models.Pair("BTC_USDT", "BTC", "USDT", 2, 8, D("0.001"), D("10.0"), D("10.0"))
    ]


_TICKER = """{"pair": "BTC_USDT", "last": 45000.0, "open": 44990.0, "vol": 1000.0, "buy": 44990.0,
    "sell": 45010.0, "high": 45500.0, "low": 44500.0, "diff": 10.0, "diff_percent": 0.02,
    "price_precision": 2, "amount_precision": 8, "timestamp": 1630862400.0}"""


def test_tickers_list_or_object() -> None:
    from_list = rp.parse_tickers(_load(f"[{_TICKER}]"))
    from_object = rp.parse_tickers(_load(_TICKER))
    assert from_list == from_object
    (ticker,) = from_list
    assert ticker.pair == "BTC_USDT"
    assert ticker.last == D("45000.0") and ticker.diff_percent == D("0.02")
    assert ticker.price_precision == 2 and ticker.amount_precision == 8
    assert ticker.timestamp == D("1630862400.0")


def test_ticker_of_never_traded_pair_has_no_timestamp() -> None:
    (ticker,) = rp.parse_tickers(_load('{"pair": "NEW_USDT", "timestamp": 0, "last": null}'))
    assert ticker.timestamp is None and ticker.last is None


def test_order_book() -> None:
    book = rp.parse_order_book(
        _load(
            """{"buy": [{"amount": 1.0, "price": 45000.0}, {"amount": 2.0, "price": 44990.0}],
            "sell": [{"amount": 1.0, "price": 45010.0}, {"amount": 2.0, "price": 45020.0}]}"""
        )
    )
    assert book.buy == (models.Level(D("45000.0"), D("1.0")), models.Level(D("44990.0"), D("2.0")))
    assert book.sell == (models.Level(D("45010.0"), D("1.0")), models.Level(D("45020.0"), D("2.0")))
    assert rp.parse_order_book({}) == models.OrderBook((), ())


def test_candles() -> None:
    (candle,) = rp.parse_candles(
        _load(
            """[{"time": 1630862400, "open": 45000.0, "close": 45100.0, "low": 44900.0,
            "high": 45200.0, "volume": 1000.0, "quoteVolume": 45050000.0, "tradesCount": 150,
            "takerBuyBaseVolume": 600.0, "takerBuyQuoteVolume": 27030000.0}]"""
        )
    )
    assert candle == models.Candle(
        D(1630862400), D("45000.0"), D("45100.0"), D("44900.0"), D("45200.0"), D("1000.0"),
        D("45050000.0"), 150, D("600.0"), D("27030000.0"),
    )  # fmt: skip


def test_public_trades() -> None:
    (trade,) = rp.parse_public_trades(
        _load(
            """[{"id": 1, "price": 45000.0, "amount": 2.5, "timestamp": 1630862400.123456,
            "pair": "BTC_USDT", "type": "buy"}]"""
        )
    )
    assert trade == models.PublicTrade(
        1,
        D("45000.0"),
        D("2.5"),
        D("1630862400.123456"),
        "BTC_USDT",
        constants.OrderSide.BUY,
        "buy",
    )


def test_accounts_with_and_without_parent() -> None:
    accounts = rp.parse_accounts(
        _load(
            """[{"id": 123, "email": "example@email.com", "name": "John Doe"},
            {"id": 124, "email": null, "name": "sub", "parent_id": 123}]"""
        )
    )
    assert accounts == [
        models.Account(123, "example@email.com", "John Doe", None),
        models.Account(124, None, "sub", 123),
    ]


def test_balances() -> None:
    (balance,) = rp.parse_balances(
        _load(
            """[{"balance": 1000.0, "reserve": 500.0, "currency": "USDT", "wallet_type": "SPOT",
            "last_update_at": "2023-09-04T12:00:00Z", "account_id": 12345}]"""
        )
    )
    assert balance == models.Balance(
        D("1000.0"), D("500.0"), "USDT", constants.WalletType.SPOT, "SPOT",
        datetime(2023, 9, 4, 12, tzinfo=UTC), 12345,
    )  # fmt: skip


def test_balance_with_unknown_wallet_keeps_raw() -> None:
    (balance,) = rp.parse_balances(_load('[{"balance": 1, "currency": "X", "wallet_type": "P2P"}]'))
    assert balance.wallet_type is None and balance.wallet_type_raw == "P2P"
    assert balance.reserve == 0 and balance.last_update_at is None


def test_fee_rules() -> None:
    (rule,) = rp.parse_fee_rules(
        _load(
            """[{"account_id": 12345, "active_once": ["2023-09-04T12:00:00Z", "2023-09-05T12:00:00Z"],
            "taker_fee_rate": 0.002, "maker_fee_rate": 0.0015, "fee_currency": "USD",
            "priority": 1, "currency": null, "pair": null, "is_active": true}]"""
        )
    )
    assert rule == models.FeeRule(
        12345, datetime(2023, 9, 4, 12, tzinfo=UTC), datetime(2023, 9, 5, 12, tzinfo=UTC),
        D("0.002"), D("0.0015"), "USD", 1, None, None, True,
    )  # fmt: skip


def test_fee_rule_unbounded_and_integer_ids() -> None:
    (rule,) = rp.parse_fee_rules(
        _load(
            """[{"active_once": null, "taker_fee_rate": 0.002, "maker_fee_rate": 0.001,
            "currency": 3, "pair": 7, "is_active": false}]"""
        )
    )
    assert rule.active_from is None and rule.active_to is None
    assert (rule.currency, rule.pair, rule.is_active) == (3, 7, False)
    with pytest.raises(UpstreamProtocolError):
        rp.parse_fee_rules([{"active_once": ["x"], "taker_fee_rate": 1, "maker_fee_rate": 1}])


_ORDER = """{"id": 123, "account_id": 456, "pair": "BTC_USDT", "amount": 1.5, "price": 45000.0,
    "side": "BID", "status": "FILLED", "type": "LIMIT", "wallet_type": "SPOT",
    "amount_canceled": 0.0, "amount_filled": 1.5, "date": "2023-09-04T12:00:00Z",
    "open_at": "2023-09-04T11:59:00Z", "tif": "GTC", "updated_at": "2023-09-04T12:01:00Z",
    "done_at": null, "expire_after": null, "stop_price": null}"""


def test_orders_docs_example() -> None:
    (order,) = rp.parse_orders(_load(f"[{_ORDER}]"))
    assert order.id == 123 and order.account_id == 456 and order.pair == "BTC_USDT"
    assert order.amount == D("1.5") and order.price == D("45000.0")
    assert order.side is constants.OrderSide.BUY and order.side_raw == "BID"
    assert order.status is constants.OrderStatus.FILLED
    assert order.type is constants.OrderType.LIMIT
    assert order.wallet_type is constants.WalletType.SPOT
    assert order.amount_canceled == 0 and order.amount_filled == D("1.5")
    assert order.date == datetime(2023, 9, 4, 12, tzinfo=UTC)
    assert order.open_at == datetime(2023, 9, 4, 11, 59, tzinfo=UTC)
    assert order.updated_at == datetime(2023, 9, 4, 12, 1, tzinfo=UTC)
    assert order.tif is constants.TimeInForce.GTC
    assert order.done_at is None and order.expire_after is None and order.stop_price is None


def test_order_with_all_times_null_and_aliases() -> None:
    payload = _load(
        """[{"id": 9, "pair": "ETH_USDT", "side": "ASK", "status": "PARTIAL_CANCELLED",
        "type": "STOP_LIMIT", "wallet_type": "CROSS_MARGIN", "date": null, "open_at": null,
        "updated_at": null, "done_at": null, "expire_after": null, "stop_price": 1.5}]"""
    )
    (order,) = rp.parse_orders(payload)
    assert order.side is constants.OrderSide.SELL
    assert order.status is constants.OrderStatus.PARTIAL_CANCELED
    assert order.status_raw == "PARTIAL_CANCELLED"
    assert order.wallet_type is constants.WalletType.MARGIN_CROSS
    assert (order.date, order.open_at, order.updated_at, order.done_at) == (None,) * 4
    assert order.stop_price == D("1.5")


def test_order_naive_time_is_utc_and_bad_time_refused() -> None:
    (order,) = rp.parse_orders([{"id": 1, "pair": "X", "date": "2023-09-04T12:00:00"}])
    assert order.date == datetime(2023, 9, 4, 12, tzinfo=UTC)
    for bad in ("yesterday", 1630862400):
        with pytest.raises(UpstreamProtocolError, match="date"):
            rp.parse_orders([{"id": 1, "pair": "X", "date": bad}])


def test_account_trades() -> None:
    (trade,) = rp.parse_account_trades(
        _load(
            """[{"id": 293107798, "pair": "BTC_USDT", "side": "BUY", "price": 45000.0,
            "amount": 1.0, "fee": 0.005, "timestamp": 1630862400.0, "order_id": 123456}]"""
        )
    )
    assert trade == models.AccountTrade(
        293107798, "BTC_USDT", constants.OrderSide.BUY, "BUY", D("45000.0"), D("1.0"),
        D("0.005"), D("1630862400.0"), 123456,
    )  # fmt: skip


def test_activity() -> None:
    (item,) = rp.parse_activity(
        _load(
            """[{"balance": 500.0, "reserve": 0, "currency": "USDT", "wallet_type": "SPOT",
            "last_update_at": "2023-09-04T12:00:00Z", "account_id": 0, "op_type": 1}]"""
        )
    )
    assert item == models.Activity(
        D("500.0"), D(0), "USDT", constants.WalletType.SPOT, "SPOT",
        datetime(2023, 9, 4, 12, tzinfo=UTC), 0, 1,
    )  # fmt: skip


@pytest.mark.parametrize(("text", "ids"), [("[34]", [34]), ("34", [34]), ("[34, 35]", [34, 35])])
def test_place_order_list_or_bare_number(text: str, ids: list[int]) -> None:
    assert rp.parse_place_order(_load(text)) == ids


@pytest.mark.parametrize("text", ["[]", "null", "true", "[1.5]", '{"id": 1}', '["abc"]', "[[1]]"])
def test_place_order_refuses_non_ids(text: str) -> None:
    with pytest.raises(UpstreamProtocolError):
        rp.parse_place_order(_load(text))


def test_cancel_map_classification() -> None:
    outcomes = rp.parse_cancel_result(
        _load(
            """{"1": "CANCELLED", "5": "canceled", "6": "PARTIAL_CANCELED", "8": "order not found",
            "9": "ORDER_NOT_FOUND", "10": "order already filled", "11": null}"""
        )
    )
    by_id = {o.order_id: (o.raw, o.outcome) for o in outcomes}
    assert by_id == {
        1: ("CANCELLED", models.CancelResult.CANCELLED),
        5: ("canceled", models.CancelResult.CANCELLED),
        6: ("PARTIAL_CANCELED", models.CancelResult.CANCELLED),
        8: ("order not found", models.CancelResult.NOT_FOUND),
        9: ("ORDER_NOT_FOUND", models.CancelResult.NOT_FOUND),
        10: ("order already filled", models.CancelResult.OTHER),
        11: ("", models.CancelResult.OTHER),
    }
    with pytest.raises(UpstreamProtocolError):
        rp.parse_cancel_result({"abc": "CANCELLED"})
    with pytest.raises(UpstreamProtocolError):
        rp.parse_cancel_result([1, 2])


def test_missing_field_names_endpoint_and_field() -> None:
    with pytest.raises(UpstreamProtocolError, match=r"GET /pairs.*'currency1'"):
        rp.parse_pairs([{"name": "X"}])
    with pytest.raises(UpstreamProtocolError, match=r"'price' is missing"):
        rp.parse_public_trades([{"id": 2, "amount": 1, "timestamp": 1, "pair": "X"}])
    with pytest.raises(UpstreamProtocolError, match=r"'price' is not an exact number"):
        rp.parse_public_trades([{"id": 2, "price": 0.5, "amount": 1, "timestamp": 1, "pair": "X"}])
    with pytest.raises(UpstreamProtocolError, match="exact"):
        rp.parse_server_time({"serverTime": "soon"})


# --- error bodies -------------------------------------------------------------------------------


def test_error_body_json_slug() -> None:
    err = rp.parse_error_body(
        401, b'{"code":"UNAUTHORIZED","message":"missing or invalid Authorization header"}', None
    )
    assert (err.http_status, err.code, err.message, err.retry_after) == (
        401, "UNAUTHORIZED", "missing or invalid Authorization header", None,
    )  # fmt: skip


def test_error_body_numeric_code_text_and_number() -> None:
    assert (
        rp.parse_error_body(400, b'{"code": "1003", "message": "invalid order amount"}', None).code
        == "1003"
    )
    err = rp.parse_error_body(400, b'{"code": 2002, "message": "insufficient funds"}', None)
    assert err.code == "2002" and err.message == "insufficient funds"


def test_error_body_html_and_empty() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    err = rp.parse_error_body(502, html, None)
    assert err.http_status == 502 and err.code == "" and "502 Bad Gateway" in err.message
    empty = rp.parse_error_body(503, b"", None)
    assert (empty.http_status, empty.code, empty.message) == (503, "", "")
    blank = rp.parse_error_body(500, b"  \n", None)
    assert (blank.code, blank.message) == ("", "")


def test_error_body_long_and_odd_json() -> None:
    assert len(rp.parse_error_body(500, b"x" * 5000, None).message) <= 500
    err = rp.parse_error_body(400, b'{"code": true, "message": null}', None)
    assert (err.code, err.message) == ("", "")
    assert rp.parse_error_body(400, b'{"error": "bad pair"}', None).message == "bad pair"
    assert rp.parse_error_body(400, b'"just a string"', None).code == ""


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", None),  # not delay-seconds: the default pause applies
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        (None, None),
        ("", None),
    ],
)
def test_error_body_retry_after(header: str | None, seconds: float | None) -> None:
    assert rp.parse_error_body(429, b"", header).retry_after == seconds


# --- robustness -----------------------------------------------------------------------------------

_PARSERS: list[Callable[[object], object]] = [
    rp.parse_server_time,
    rp.parse_currency_rates,
    rp.parse_currencies,
    rp.parse_pairs,
    rp.parse_tickers,
    rp.parse_order_book,
    rp.parse_candles,
    rp.parse_public_trades,
    rp.parse_accounts,
    rp.parse_balances,
    rp.parse_fee_rules,
    rp.parse_orders,
    rp.parse_account_trades,
    rp.parse_activity,
    rp.parse_place_order,
    rp.parse_cancel_result,
]
_KEYS = [
    "serverTime", "short_name", "sign", "name", "currency1", "currency2", "price_precision",
    "amount_precision", "minimum_order_size", "maximum_order_size", "minimum_order_value", "pair",
    "last", "timestamp", "buy", "sell", "price", "amount", "time", "open", "close", "low", "high",
    "volume", "tradesCount", "id", "type", "email", "parent_id", "balance", "reserve", "currency",
    "wallet_type", "last_update_at", "account_id", "active_once", "taker_fee_rate",
    "maker_fee_rate", "is_active", "side", "status", "date", "done_at", "fee", "order_id", "op_type",
    "1", "BTC",
]  # fmt: skip
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["2023-09-04T12:00:00Z", "-5", "--5", "²", "1e5", "0", "CANCELLED"])
)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=8)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_parsers_raise_only_protocol_errors(payload: object) -> None:
    for parse in _PARSERS:
        with contextlib.suppress(UpstreamProtocolError):
            parse(payload)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from(_KEYS), _leaf, max_size=20), min_size=1, max_size=3)
)
def test_list_parsers_on_rows_of_known_keys(rows: list[dict[str, object]]) -> None:
    for parse in _PARSERS:
        with contextlib.suppress(UpstreamProtocolError):
            parse(rows)


@settings(max_examples=100, deadline=None)
@given(st.integers(100, 599), st.binary(max_size=80), st.none() | st.text(max_size=10))
def test_parse_error_body_never_raises(status: int, body: bytes, header: str | None) -> None:
    err = rp.parse_error_body(status, body, header)
    assert err.http_status == status
    assert err.retry_after is None or err.retry_after >= 0
