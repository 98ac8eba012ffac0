"""The sandbox matching engine: known answers per order type, and invariants under random flow."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sandbox.engine.exchange import Exchange
from gateway.sandbox.engine.records import ExchangeError, OrderRequest
from gateway.sandbox.engine.specs import FeeRule, default_currencies, default_pairs

D = Decimal
A, B, FEES = 1001, 1002, 1


def exchange() -> Exchange:
    ex = Exchange(default_pairs(), default_currencies(), fee_account_id=FEES)
    for account in (A, B):
        ex.open_account(account, email=f"{account}@x", name=str(account))
        ex.credit(account, "USDT", D("100000"), 0)
        ex.credit(account, "BTC", D("10"), 0)
    return ex


def limit(side: str, amount: str, price: str, **kw: object) -> OrderRequest:
    return OrderRequest(
        "BTC_USDT", "LIMIT", side, base_amount=D(amount), limit_price=D(price), **kw
    )  # type: ignore[arg-type]


def test_limit_orders_match_at_maker_price_with_fees() -> None:
    ex = exchange()
    sell = ex.place_order(B, limit("SELL", "1", "30000"), 1)
    buy = ex.place_order(A, limit("BUY", "0.4", "30100"), 2)
    assert ex.order(A, buy).status == "FILLED"  # type: ignore[union-attr]
    assert ex.order(B, sell).status == "PARTIAL_FILLED"  # type: ignore[union-attr]
    usdt_a = ex.wallet(A, "USDT")
    assert usdt_a.balance == D("100000") - D("12000") and usdt_a.reserve == 0
    btc_a = ex.wallet(A, "BTC")
    assert btc_a.balance == D("10") + D("0.4") - D("0.0008")  # taker fee 0.2 % of 0.4 BTC
    assert ex.wallet(B, "USDT").balance == D("100000") + D("12000") - D("12")  # maker 0.1 %
    assert ex.wallet(B, "BTC").reserve == D("0.6")
    assert ex.wallet(FEES, "BTC").balance == D("0.0008")
    trades = ex.trades("BTC_USDT")
    assert [(t.price, t.amount, t.type) for t in trades] == [(D("30000"), D("0.4"), "buy")]
    ex.check_invariants()


def test_price_time_priority() -> None:
    ex = exchange()
    first = ex.place_order(B, limit("SELL", "0.1", "30000"), 1)
    second = ex.place_order(B, limit("SELL", "0.1", "30000"), 2)
    better = ex.place_order(B, limit("SELL", "0.1", "29990"), 3)
    ex.place_order(A, limit("BUY", "0.15", "30000"), 4)
    assert ex.order(B, better).status == "FILLED"  # type: ignore[union-attr]
    assert ex.order(B, first).amount_filled == D("0.05")  # type: ignore[union-attr]
    assert ex.order(B, second).amount_filled == 0  # type: ignore[union-attr]
    ex.check_invariants()


def test_market_orders_by_quote_and_base() -> None:
    ex = exchange()
    ex.place_order(B, limit("SELL", "1", "30000"), 1)
    buy = ex.place_order(A, OrderRequest("BTC_USDT", "MARKET", "BUY", quote_amount=D("3000")), 2)
    order = ex.order(A, buy)
    assert order is not None and order.amount_filled == D("0.1") and order.status == "FILLED"
    ex.place_order(B, limit("BUY", "0.5", "29000"), 3)
    sell = ex.place_order(A, OrderRequest("BTC_USDT", "MARKET", "SELL", base_amount=D("0.7")), 4)
    order = ex.order(A, sell)
    assert order is not None and order.amount_filled == D("0.5")
    assert order.status == "PARTIAL_CANCELED" and order.amount_canceled == D("0.2")
    ex.check_invariants()


def test_stop_orders_trigger_on_last_price() -> None:
    ex = exchange()
    stop = ex.place_order(
        A,
        OrderRequest(
            "BTC_USDT",
            "STOP_LIMIT",
            "BUY",
            base_amount=D("0.1"),
            limit_price=D("31000"),
            stop_price=D("30500"),
            stop_operator="GTE",
        ),
        1,
    )
    assert ex.order(A, stop).status == "PENDING"  # type: ignore[union-attr]
    assert ex.wallet(A, "USDT").reserve == D("3100")
    ex.place_order(B, limit("SELL", "1", "30600"), 2)
    ex.place_order(B, limit("SELL", "0.01", "30500"), 3)
    ex.place_order(A, limit("BUY", "0.01", "30500"), 4)  # last price 30500 -> trigger
    order = ex.order(A, stop)
    assert order is not None and order.status == "FILLED" and order.value_filled == D("3060")
    ex.check_invariants()


def test_post_only_and_errors_leave_state_untouched() -> None:
    ex = exchange()
    ex.place_order(B, limit("SELL", "1", "30000"), 1)
    before = ex.balances(A)
    cases = [
        (limit("BUY", "0.1", "30000", post_only=True), "1006"),
        (limit("BUY", "90", "30000"), "2002"),
        (limit("BUY", "0.1", "30000.001"), "1017"),
        (limit("BUY", "0.0000001", "30000"), "1017"),
        (limit("BUY", "0.0001", "1"), "1018"),
        (limit("BUY", "1000", "1"), "1018"),
        (limit("BUY", "-1", "1"), "1003"),
        (OrderRequest("NOPE_USDT", "LIMIT", "BUY"), "1016"),
        (OrderRequest("BTC_USDT", "FANCY", "BUY"), "1006"),
        (OrderRequest("BTC_USDT", "LIMIT", "UP"), "1007"),
        (OrderRequest("BTC_USDT", "LIMIT", "BUY", base_amount=D(1)), "1001"),
        (OrderRequest("BTC_USDT", "MARKET", "BUY", base_amount=D(1)), "1001"),
    ]
    for request, code in cases:
        with pytest.raises(ExchangeError) as info:
            ex.place_order(A, request, 2)
        assert info.value.code == code, (request, info.value)
    assert ex.balances(A) == before
    assert ex.cancel_orders(A, [999], 3) == {999: "order not found"}
    ex.check_invariants()


def test_fee_rules_apply_by_priority() -> None:
    ex = exchange()
    ex.add_fee_rule(FeeRule(A, D("0"), D("0.01"), priority=5))
    ex.add_fee_rule(FeeRule(A, D("0"), D("0.5"), priority=1))
    ex.place_order(B, limit("SELL", "1", "30000"), 1)
    ex.place_order(A, limit("BUY", "1", "30000"), 2)
    assert ex.wallet(FEES, "BTC").balance == D("0.01")


def test_candles_and_tickers_from_trades() -> None:
    ex = exchange()
    for i, price in enumerate(("30000", "30100", "29900")):
        ex.place_order(B, limit("SELL", "0.1", price), 60 * i)
        ex.place_order(A, limit("BUY", "0.1", price), 60 * i + 1)
    candles = ex.candles("BTC_USDT", "60", since=None, until=None)
    assert len(candles) == 1
    c = candles[0]
    assert (c.open, c.high, c.low, c.close, c.trades_count) == (
        D("30000"),
        D("30100"),
        D("29900"),
        D("29900"),
        3,
    )
    ticker = ex.ticker("BTC_USDT", 200)
    assert ticker.last == D("29900") and ticker.vol == D("0.3") and ticker.diff == D("-100")
    assert ex.ticker("ETH_USDT", 200).timestamp == 0


ORDERS = st.tuples(
    st.sampled_from([A, B]),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["LIMIT", "LIMIT", "MARKET", "STOP_LIMIT", "STOP_MARKET", "CANCEL"]),
    st.integers(1, 2000),  # amount in 0.001 BTC
    st.integers(29000, 31000),  # price
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ORDERS, min_size=1, max_size=80))
def test_random_flow_keeps_every_invariant(
    flow: list[tuple[int, str, str, int, int, bool]],
) -> None:
    ex = exchange()
    for step, (account, side, kind, units, price, flag) in enumerate(flow):
        amount = D(units) / 1000
        try:
            if kind == "CANCEL":
                open_ids = [
                    o.id
                    for o in ex.orders(account)
                    if o.status in ("OPEN", "PENDING", "PARTIAL_FILLED")
                ]
                ex.cancel_orders(account, open_ids[:1], step)
            elif kind == "LIMIT":
                ex.place_order(account, limit(side, str(amount), str(price), post_only=flag), step)
            elif kind == "MARKET":
                quote = (amount * price).quantize(D("0.01"))
                req = OrderRequest(
                    "BTC_USDT",
                    "MARKET",
                    side,
                    base_amount=None if side == "BUY" else amount,
                    quote_amount=quote if side == "BUY" else None,
                )
                ex.place_order(account, req, step)
            else:
                req = OrderRequest(
                    "BTC_USDT",
                    kind,
                    side,
                    base_amount=amount,
                    limit_price=D(price) if kind == "STOP_LIMIT" else None,
                    stop_price=D(price),
                    stop_operator="GTE" if flag else "LTE",
                )
                ex.place_order(account, req, step)
        except ExchangeError as exc:
            assert exc.http_status == 400 and exc.code in {"1003", "1006", "1018", "2002"}
        ex.check_invariants()
