"""MarketDataService end to end: gateway over real sockets against the sandbox exchange."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from alp.v3 import common_pb2, market_data_pb2_grpc
from alp.v3 import market_data_pb2 as md

from gateway.app import Gateway
from gateway.sandbox import Sandbox
from tests.gateway.status_details import details_of

pytestmark = pytest.mark.asyncio


def stub(channel: grpc.aio.Channel) -> market_data_pb2_grpc.MarketDataServiceStub:
    return market_data_pb2_grpc.MarketDataServiceStub(channel)


async def test_list_pairs_matches_the_exchange(channel: grpc.aio.Channel, sandbox: Sandbox) -> None:
    reply = await stub(channel).ListPairs(md.ListPairsRequest())
    expected = {p.name: p for p in sandbox.exchange.pairs()}
    assert {p.name for p in reply.pairs} == set(expected)
    for pair in reply.pairs:
        spec = expected[pair.name]
        assert pair.price_precision == spec.price_precision
        assert Decimal(pair.minimum_order_size) == spec.min_order_size
        assert Decimal(pair.minimum_order_value) == spec.min_order_value
        assert "e" not in pair.minimum_order_size.lower()


async def test_list_pairs_filters(channel: grpc.aio.Channel) -> None:
    reply = await stub(channel).ListPairs(md.ListPairsRequest(currency2="BTC"))
    assert reply.pairs and all(p.currency2 == "BTC" for p in reply.pairs)


async def test_server_time_and_rates(channel: grpc.aio.Channel) -> None:
    reply = await stub(channel).GetServerTime(md.GetServerTimeRequest())
    assert reply.server_time.seconds > 1_700_000_000
    rates = await stub(channel).GetCurrencyRates(md.GetCurrencyRatesRequest())
    assert Decimal(rates.rates["USDT"]) == 1
    currencies = await stub(channel).ListCurrencies(md.ListCurrenciesRequest())
    assert {"BTC", "USDT", "ETH"} <= {c.short_name for c in currencies.currencies}


async def test_order_book_trades_candles_after_a_trade(
    channel: grpc.aio.Channel, gateway: Gateway, sandbox: Sandbox
) -> None:
    from alp.v3 import trading_pb2, trading_pb2_grpc

    trading = trading_pb2_grpc.TradingServiceStub(channel)
    sell = trading_pb2.PlaceOrderRequest(
        pair="ETH_USDT",
        side=common_pb2.ORDER_SIDE_SELL,
        limit=trading_pb2.LimitOrder(base_amount="1.5", limit_price="2000.10"),
    )
    buy = trading_pb2.PlaceOrderRequest(
        pair="ETH_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        limit=trading_pb2.LimitOrder(base_amount="0.5", limit_price="2000.10"),
    )
    await trading.PlaceOrder(sell)
    book = await stub(channel).GetOrderBook(md.GetOrderBookRequest(pair="ETH_USDT"))
    assert [(lvl.price, lvl.amount) for lvl in book.sell][:1] == [("2000.1", "1.5")] or (
        Decimal(book.sell[0].price) == Decimal("2000.10")
        and Decimal(book.sell[0].amount) == Decimal("1.5")
    )
    await trading.PlaceOrder(buy, metadata=(("x-alp-account", "desk-b"),))
    trades = await stub(channel).ListTrades(md.ListTradesRequest(pair="ETH_USDT", limit=5))
    assert len(trades.trades) == 1
    trade = trades.trades[0]
    assert Decimal(trade.price) == Decimal("2000.10") and Decimal(trade.amount) == Decimal("0.5")
    assert trade.side == common_pb2.ORDER_SIDE_BUY
    candles = await stub(channel).ListCandles(
        md.ListCandlesRequest(pair="ETH_USDT", interval=common_pb2.CHART_INTERVAL_ONE_MINUTE)
    )
    assert len(candles.candles) == 1 and candles.candles[0].trades_count == 1
    tickers = await stub(channel).ListTickers(md.ListTickersRequest(pair="ETH_USDT"))
    assert len(tickers.tickers) == 1 and Decimal(tickers.tickers[0].last) == Decimal("2000.10")


@pytest.mark.parametrize(
    "call,request_message,field",
    [
        ("GetOrderBook", md.GetOrderBookRequest(pair="btc_usdt"), "pair"),
        ("GetOrderBook", md.GetOrderBookRequest(pair="BTC_USDT", limit_buy=21), "limit_buy"),
        ("GetOrderBook", md.GetOrderBookRequest(pair="BTC_USDT", limit_sell=0), "limit_sell"),
        ("ListCandles", md.ListCandlesRequest(pair="BTC_USDT"), "interval"),
        (
            "ListCandles",
            md.ListCandlesRequest(
                pair="BTC_USDT", interval=common_pb2.CHART_INTERVAL_ONE_DAY, limit=501
            ),
            "limit",
        ),
        ("ListTrades", md.ListTradesRequest(pair=""), "pair"),
        ("ListTrades", md.ListTradesRequest(pair="BTC_USDT", limit=-1), "limit"),
        ("ListPairs", md.ListPairsRequest(currency1="btc"), "currency1"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    channel: grpc.aio.Channel, sandbox: Sandbox, call: str, request_message: object, field: str
) -> None:
    before = sum(sandbox.stats.rest_requests.values())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(stub(channel), call)(request_message)
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details.fields
    assert sum(sandbox.stats.rest_requests.values()) == before


async def test_unknown_pair_is_mapped_with_error_info(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).GetOrderBook(md.GetOrderBookRequest(pair="NOPE_USDT"))
    details = details_of(info.value)
    assert details.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    assert details.error_info is not None and details.error_info.domain == "alp.com"
    assert details.error_info.metadata["http_status"] == "400"
    assert details.trailing.get("x-request-id")
