"""Caller input checks: each rule names its proto field path, all violations are collected."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.constants import OrderSide, OrderType, StopOperator, WalletType
from gateway.core.decimals import decimal_places
from gateway.core.models import Pair
from gateway.core.validation import (
    MAX_CANCEL_IDS,
    CancelAll,
    CancelByIds,
    CancelByPair,
    OrderDraft,
    validate_cancel,
    validate_limit,
    validate_order,
    validate_pair,
    validate_time_range,
)
from gateway.errors import ValidationError

RULES = Pair("BTC_USDT", "BTC", "USDT", 2, 4, Decimal("0.001"), Decimal("10"), Decimal("10"))
LIMIT = OrderDraft("BTC_USDT", "BUY", "", "limit", "0.5", None, "45000.10", None, None, None, False)


def _fields(draft: OrderDraft, rules: Pair | None = RULES) -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate_order(draft, rules)
    return [field for field, _ in info.value.violations]


def test_valid_limit_order() -> None:
    spec = validate_order(replace(LIMIT, post_only=True, client_order_id="abc-1"), RULES)
    assert spec.pair == "BTC_USDT" and spec.side is OrderSide.BUY
    assert spec.wallet_type is WalletType.SPOT and spec.order_type is OrderType.LIMIT
    assert spec.base_amount == Decimal("0.5") and spec.limit_price == Decimal("45000.10")
    assert spec.post_only and spec.client_order_id == "abc-1"


def test_valid_stop_orders_and_market() -> None:
    stop = OrderDraft(
        "BTC_USDT",
        "SELL",
        "MARGIN_CROSS",
        "stop_market",
        "1",
        None,
        None,
        "40000",
        "LTE",
        None,
        True,
    )
    spec = validate_order(stop, RULES)
    assert spec.order_type is OrderType.STOP_MARKET and spec.stop_operator is StopOperator.LTE
    assert spec.wallet_type is WalletType.MARGIN_CROSS and not spec.post_only
    market = OrderDraft("BTC_USDT", "BUY", "", "market", None, "100", None, None, None, None, False)
    assert validate_order(market, RULES).quote_amount == Decimal("100")
    sell = replace(market, side="SELL", base_amount="1", quote_amount=None)
    assert validate_order(sell, RULES).base_amount == Decimal("1")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pair": "btc_usdt"}, "pair"),
        ({"pair": ""}, "pair"),
        ({"side": "BID"}, "side"),
        ({"wallet_type": "P2P"}, "wallet_type"),
        ({"client_order_id": "has space"}, "client_order_id"),
        ({"client_order_id": "x" * 65}, "client_order_id"),
        ({"client_order_id": ""}, "client_order_id"),
        ({"base_amount": "1e5"}, "limit.base_amount"),
        ({"base_amount": "-1"}, "limit.base_amount"),
        ({"base_amount": "0"}, "limit.base_amount"),
        ({"base_amount": None}, "limit.base_amount"),
        ({"limit_price": "NaN"}, "limit.limit_price"),
        ({"limit_price": ""}, "limit.limit_price"),
        ({"limit_price": "45000.123"}, "limit.limit_price"),
        ({"base_amount": "0.12345"}, "limit.base_amount"),
        ({"base_amount": "0.0005"}, "limit.base_amount"),
        ({"base_amount": "11"}, "limit.base_amount"),
        ({"base_amount": "0.001", "limit_price": "1"}, "limit.base_amount"),
    ],
)
def test_each_rule_names_its_field(changes: dict[str, object], field: str) -> None:
    assert _fields(replace(LIMIT, **changes)) == [field]  # type: ignore[arg-type]  # dynamic replace


def test_kind_missing_names_order_oneof() -> None:
    assert _fields(replace(LIMIT, kind="")) == ["order"]
    assert _fields(replace(LIMIT, kind="iceberg", pair="x")) == ["pair", "order"]


def test_stop_fields_required() -> None:
    draft = replace(LIMIT, kind="stop_limit")
    assert _fields(draft) == ["stop_limit.stop_price", "stop_limit.stop_operator"]
    bad_op = replace(draft, stop_price="1", stop_operator="EQ")
    assert _fields(bad_op, None) == ["stop_limit.stop_operator"]


def test_market_amount_by_side() -> None:
    buy = OrderDraft("BTC_USDT", "BUY", "", "market", "1", None, None, None, None, None, False)
    assert _fields(buy, None) == ["market.quote_amount", "market.base_amount"]
    sell = replace(buy, side="SELL", base_amount=None, quote_amount="5")
    assert _fields(sell, None) == ["market.base_amount", "market.quote_amount"]
    assert _fields(replace(buy, base_amount=None, quote_amount="5")) == ["market.quote_amount"]


def test_all_violations_collected() -> None:
    draft = OrderDraft("bad", "", "P2P", "limit", "-1", None, "x", None, None, "a b", False)
    error_fields = _fields(draft)
    assert error_fields == [
        "pair", "side", "wallet_type", "client_order_id", "limit.base_amount", "limit.limit_price",
    ]  # fmt: skip
    with pytest.raises(ValidationError) as info:
        validate_order(draft, RULES)
    assert info.value.field == "pair"


def test_simple_validators() -> None:
    assert validate_pair("ETH_USDT") == "ETH_USDT"
    with pytest.raises(ValidationError) as info:
        validate_pair("eth", "symbol")
    assert info.value.field == "symbol"
    assert validate_limit(None, "limit", 100) is None and validate_limit(0, "limit", 100) is None
    assert validate_limit(100, "limit", 100) == 100
    with pytest.raises(ValidationError, match="limit"):
        validate_limit(101, "limit", 100)
    validate_time_range(1, 2, "start_time", "end_time")
    validate_time_range(None, 2, "start_time", "end_time")
    with pytest.raises(ValidationError) as info:
        validate_time_range(2, 2, "start_time", "end_time")
    assert info.value.field == "end_time"


def test_validate_cancel() -> None:
    assert validate_cancel("order_ids", [1, 5], "") == CancelByIds((1, 5))
    assert validate_cancel("all", [], "") == CancelAll()
    assert validate_cancel("pair", [], "ETH_USDT") == CancelByPair("ETH_USDT")
    for kind, ids, pair, field in [
        ("order_ids", [], "", "order_ids.ids"),
        ("order_ids", [0], "", "order_ids.ids"),
        ("order_ids", [2**63], "", "order_ids.ids"),
        ("order_ids", [1, 1], "", "order_ids.ids"),
        ("order_ids", list(range(1, MAX_CANCEL_IDS + 2)), "", "order_ids.ids"),
        ("pair", [], "eth", "pair"),
        ("", [], "", "target"),
    ]:
        with pytest.raises(ValidationError) as info:
            validate_cancel(kind, ids, pair)
        assert info.value.field == field


_text = (
    st.none()
    | st.text(max_size=8)
    | st.sampled_from(["0.5", "1", "0.001", "45000.10", "10", "0.1234", "1e3"])
)
_drafts = st.builds(
    OrderDraft,
    pair=st.sampled_from(["BTC_USDT", "btc", "", "ETH_USDT"]) | st.text(max_size=6),
    side=st.sampled_from(["BUY", "SELL", "", "bid"]),
    wallet_type=st.sampled_from(["", "SPOT", "MARGIN_CROSS", "P2P", "FUNDING", "MARGIN_ISOLATED"]),
    kind=st.sampled_from(["limit", "market", "stop_limit", "stop_market", "", "x"]),
    base_amount=_text,
    quote_amount=_text,
    limit_price=_text,
    stop_price=_text,
    stop_operator=st.none() | st.sampled_from(["GTE", "LTE", "", "EQ"]),
    client_order_id=st.none() | st.text(max_size=70),
    post_only=st.booleans(),
)
_rules = st.builds(
    Pair,
    name=st.just("BTC_USDT"),
    currency1=st.just("BTC"),
    currency2=st.just("USDT"),
    price_precision=st.integers(0, 8),
    amount_precision=st.integers(0, 8),
    minimum_order_size=st.decimals(min_value=Decimal("0.0001"), max_value=1, places=4),
    maximum_order_size=st.decimals(min_value=1, max_value=1000, places=2),
    minimum_order_value=st.decimals(min_value=0, max_value=100, places=2),
)


@settings(max_examples=300, deadline=None)
@given(_drafts, _rules)
def test_accepted_specs_satisfy_rules(draft: OrderDraft, rules: Pair) -> None:
    try:
        spec = validate_order(draft, rules)
    except ValidationError as error:
        assert error.violations and all(field for field, _ in error.violations)
        return
    for price in (spec.limit_price, spec.stop_price):
        if price is not None:
            assert price > 0 and decimal_places(price) <= rules.price_precision
    for amount in (spec.base_amount, spec.quote_amount):
        assert amount is None or amount > 0
    if spec.base_amount is not None:
        assert decimal_places(spec.base_amount) <= rules.amount_precision
        assert rules.minimum_order_size <= spec.base_amount <= rules.maximum_order_size
    if spec.order_type is OrderType.MARKET:
        if spec.side is OrderSide.BUY:
            assert spec.quote_amount is not None and spec.base_amount is None
            assert spec.quote_amount >= rules.minimum_order_value
        else:
            assert spec.base_amount is not None and spec.quote_amount is None
    else:
        assert spec.base_amount is not None
        price = spec.limit_price or spec.stop_price
        assert price is not None and spec.base_amount * price >= rules.minimum_order_value
    if spec.order_type in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET):
        assert spec.stop_price is not None and spec.stop_operator is not None
    if spec.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        assert spec.limit_price is not None
    assert not spec.post_only or spec.order_type is OrderType.LIMIT
    assert spec.pair == draft.pair


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        OrderDraft,
        pair=st.text(max_size=10),
        side=st.text(max_size=5),
        wallet_type=st.text(max_size=5),
        kind=st.text(max_size=5)
        | st.sampled_from(["limit", "market", "stop_limit", "stop_market"]),
        base_amount=st.none() | st.text(max_size=10),
        quote_amount=st.none() | st.text(max_size=10),
        limit_price=st.none() | st.text(max_size=10),
        stop_price=st.none() | st.text(max_size=10),
        stop_operator=st.none() | st.text(max_size=4),
        client_order_id=st.none() | st.text(max_size=10),
        post_only=st.booleans(),
    ),
    st.none() | _rules,
)
def test_arbitrary_text_raises_only_validation_error(draft: OrderDraft, rules: Pair | None) -> None:
    with contextlib.suppress(ValidationError):
        validate_order(draft, rules)
