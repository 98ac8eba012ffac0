"""TradingService and AccountService end to end: validation, signing, error mapping, exact money."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc, common_pb2, trading_pb2, trading_pb2_grpc

from gateway.sandbox import Sandbox
from tests.gateway.status_details import details_of

BUY = common_pb2.ORDER_SIDE_BUY
SELL = common_pb2.ORDER_SIDE_SELL
DESK_B = (("x-alp-account", "desk-b"),)


def trading(channel: grpc.aio.Channel) -> trading_pb2_grpc.TradingServiceStub:
    return trading_pb2_grpc.TradingServiceStub(channel)


def accounts(channel: grpc.aio.Channel) -> account_pb2_grpc.AccountServiceStub:
    return account_pb2_grpc.AccountServiceStub(channel)


def limit(side: int, amount: str, price: str, pair: str = "BTC_USDT", **kw: object) -> object:
    return trading_pb2.PlaceOrderRequest(
        pair=pair,
        side=side,
        limit=trading_pb2.LimitOrder(base_amount=amount, limit_price=price),
        **kw,
    )


async def balances(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> dict[str, account_pb2.Balance]:
    reply = await accounts(channel).ListBalances(
        account_pb2.ListBalancesRequest(), metadata=metadata
    )
    return {b.currency: b for b in reply.balances if b.wallet_type == common_pb2.WALLET_TYPE_SPOT}


async def test_place_limit_order_reserves_exactly_and_lists(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    before = await balances(channel)
    reply = await trading(channel).PlaceOrder(limit(BUY, "0.1", "20000.01", client_order_id="t-1"))
    assert reply.order_id > 0 and list(reply.order_ids) == [reply.order_id]
    assert reply.client_order_id == "t-1" and not reply.reconciled
    after = await balances(channel)
    reserved = Decimal(after["USDT"].reserve) - Decimal(before["USDT"].reserve)
    assert reserved == Decimal("2000.001")
    assert Decimal(after["USDT"].available) == Decimal(after["USDT"].balance) - Decimal(
        after["USDT"].reserve
    )
    orders = await accounts(channel).ListOrders(account_pb2.ListOrdersRequest())
    mine = [o for o in orders.orders if o.id == reply.order_id]
    assert len(mine) == 1
    order = mine[0]
    assert order.side == BUY and order.status == common_pb2.ORDER_STATUS_OPEN
    assert Decimal(order.price) == Decimal("20000.01") and Decimal(order.amount) == Decimal("0.1")


async def test_no_client_order_id_is_invented(channel: grpc.aio.Channel) -> None:
    reply = await trading(channel).PlaceOrder(limit(BUY, "0.01", "20000"))
    assert reply.client_order_id == "" and reply.order_id > 0


async def test_cancel_by_ids_maps_outcomes(channel: grpc.aio.Channel) -> None:
    placed = await trading(channel).PlaceOrder(limit(BUY, "0.01", "20000"))
    reply = await trading(channel).CancelOrders(
        trading_pb2.CancelOrdersRequest(
            order_ids=trading_pb2.OrderIdList(ids=[placed.order_id, 987654321])
        )
    )
    assert reply.outcomes[placed.order_id].status == trading_pb2.CANCEL_STATUS_CANCELLED
    assert reply.outcomes[987654321].status == trading_pb2.CANCEL_STATUS_NOT_FOUND
    assert reply.outcomes[987654321].raw == "order not found"
    after = await balances(channel)
    assert Decimal(after["USDT"].reserve) == 0


async def test_cancel_all_and_by_pair_are_accepted(channel: grpc.aio.Channel) -> None:
    await trading(channel).PlaceOrder(limit(BUY, "0.01", "20000"))
    await trading(channel).PlaceOrder(limit(BUY, "0.1", "1000", pair="ETH_USDT"))
    reply = await trading(channel).CancelOrders(trading_pb2.CancelOrdersRequest(pair="BTC_USDT"))
    assert reply.accepted and not reply.outcomes
    reply = await trading(channel).CancelOrders(trading_pb2.CancelOrdersRequest(all=True))
    assert reply.accepted
    assert Decimal((await balances(channel))["USDT"].reserve) == 0


async def test_insufficient_funds_is_failed_precondition(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await trading(channel).PlaceOrder(limit(BUY, "90", "20000"))
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.error_info is not None
    assert details.error_info.reason == "2002" and details.error_info.domain == "alp.com"
    assert details.error_info.metadata["http_status"] == "400"


@pytest.mark.parametrize(
    "request_message,field",
    [
        (trading_pb2.PlaceOrderRequest(pair="BTC_USDT", side=BUY), "order"),
        (limit(0, "0.1", "20000"), "side"),
        (limit(BUY, "0", "20000"), "limit.base_amount"),
        (limit(BUY, "-1", "20000"), "limit.base_amount"),
        (limit(BUY, "1e-3", "20000"), "limit.base_amount"),
        (limit(BUY, "NaN", "20000"), "limit.base_amount"),
        (limit(BUY, "0.1", ""), "limit.limit_price"),
        (limit(BUY, "0.1", "20000.001"), "limit.limit_price"),  # price precision 2
        (limit(BUY, "0.1234567891", "20000"), "limit.base_amount"),  # amount precision
        (limit(BUY, "0.1", "20000", pair="BTCUSDT"), "pair"),
        (limit(BUY, "0.1", "20000", pair="NOPE_USDT"), "pair"),
        (limit(BUY, "1000000", "20000"), "limit.base_amount"),  # above maximum size
        (limit(BUY, "0.0001", "1"), "limit.base_amount"),  # below minimum value
        (
            trading_pb2.PlaceOrderRequest(
                pair="BTC_USDT", side=BUY, market=trading_pb2.MarketOrder(base_amount="0.1")
            ),
            "market.quote_amount",
        ),
        (
            trading_pb2.PlaceOrderRequest(
                pair="BTC_USDT", side=SELL, market=trading_pb2.MarketOrder(quote_amount="100")
            ),
            "market.base_amount",
        ),
        (
            trading_pb2.PlaceOrderRequest(
                pair="BTC_USDT",
                side=BUY,
                stop_limit=trading_pb2.StopLimitOrder(
                    base_amount="0.1", limit_price="20000", stop_price="19000"
                ),
            ),
            "stop_limit.stop_operator",
        ),
        (limit(BUY, "0.1", "20000", client_order_id="x" * 65), "client_order_id"),
    ],
)
async def test_invalid_orders_never_reach_alp(
    channel: grpc.aio.Channel, sandbox: Sandbox, request_message: object, field: str
) -> None:
    # The first call may fetch GET /pairs for the precision checks; count trading calls only.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await trading(channel).PlaceOrder(request_message)
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT, details.message
    assert field in details.fields, details.fields
    assert sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] == 0
    assert sandbox.exchange.orders(1001) == []


@pytest.mark.parametrize(
    "request_message,field",
    [
        (trading_pb2.CancelOrdersRequest(), "target"),
        (trading_pb2.CancelOrdersRequest(all=False), "all"),
        (
            trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[])),
            "order_ids.ids",
        ),
        (
            trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[1, 1])),
            "order_ids.ids",
        ),
        (trading_pb2.CancelOrdersRequest(pair="bad"), "pair"),
    ],
)
async def test_invalid_cancels(
    channel: grpc.aio.Channel, sandbox: Sandbox, request_message: object, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await trading(channel).CancelOrders(request_message)
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details.fields
    assert sandbox.stats.rest_requests[("DELETE", "/api/v3/trading/order")] == 0


async def test_accounts_are_selected_by_metadata(channel: grpc.aio.Channel) -> None:
    demo = await accounts(channel).ListAccounts(account_pb2.ListAccountsRequest())
    desk = await accounts(channel).ListAccounts(
        account_pb2.ListAccountsRequest(include_subaccounts=True), metadata=DESK_B
    )
    assert [a.id for a in demo.accounts] == [1001]
    assert desk.accounts[0].id == 1002
    assert any(a.parent_id == 1002 for a in desk.accounts[1:])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await accounts(channel).ListBalances(
            account_pb2.ListBalancesRequest(), metadata=(("x-alp-account", "nobody"),)
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_demo_funding_is_exact(channel: grpc.aio.Channel) -> None:
    funds = await balances(channel)
    assert Decimal(funds["USDT"].balance) == Decimal("100000")
    assert Decimal(funds["BTC"].balance) == Decimal("10")
    assert Decimal(funds["ETH"].balance) == Decimal("200")


async def test_fills_fees_and_history(channel: grpc.aio.Channel, sandbox: Sandbox) -> None:
    await trading(channel).PlaceOrder(limit(SELL, "0.5", "30000"), metadata=DESK_B)
    await trading(channel).PlaceOrder(
        trading_pb2.PlaceOrderRequest(
            pair="BTC_USDT", side=BUY, market=trading_pb2.MarketOrder(quote_amount="3000")
        )
    )
    trades = await accounts(channel).ListAccountTrades(
        account_pb2.ListAccountTradesRequest(pair="BTC_USDT")
    )
    assert len(trades.trades) == 1
    fill = trades.trades[0]
    assert Decimal(fill.amount) == Decimal("0.1") and Decimal(fill.price) == Decimal("30000")
    assert Decimal(fill.fee) > 0
    activity = await accounts(channel).ListActivity(account_pb2.ListActivityRequest(limit=10))
    assert len(activity.entries) >= 2
    fees = await accounts(channel).ListFeeRules(account_pb2.ListFeeRulesRequest())
    assert fees.fee_rules and Decimal(fees.fee_rules[0].taker_fee_rate) > 0
    sandbox.exchange.check_invariants()
