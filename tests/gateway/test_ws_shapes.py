"""Every real ALP WebSocket shape against the strict sandbox: error frames, refused topics,
the all-or-nothing topic limit, silent diffs, logins ALP acknowledges with nothing."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc, trading_pb2, trading_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.app import Gateway
from gateway.errors import GatewayError
from gateway.exchange.ws_connection import WsSettings
from gateway.exchange.ws_public import SUBSCRIBED, PublicFeed
from gateway.sandbox import Sandbox, SandboxConfig
from gateway.sandbox.config import Extensions
from tests.gateway.test_streams import eventually, first_message, place

BUY, SELL = common_pb2.ORDER_SIDE_BUY, common_pb2.ORDER_SIDE_SELL


def error_reason(exc: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def ends_with(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(10):
            async for _ in call:
                pass
    return info.value


async def test_topic_of_an_unlisted_pair_ends_only_its_stream_with_not_found(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    good = stub.StreamTrades(stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"]))
    await first_message(good, predicate=lambda m: m.HasField("status"))
    bad = stub.StreamTrades(stream_pb2.StreamTradesRequest(pairs=["NOPE_USDT"]))
    error = await ends_with(bad)  # ALP: ["error", ts, "Topic does not exist"]
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error_reason(error) == "TOPIC_NOT_FOUND" and "NOPE_USDT" in (error.details() or "")
    await sandbox.inject_ws_frame(
        json.dumps(["t", int(time.time()), 77, "BTC_USDT", "0.1", "30000", "buy"]),
        topic="trade.BTC_USDT",
    )
    message = await first_message(good, predicate=lambda m: len(m.trades) > 0)
    assert message.trades[0].trade_id == 77
    assert gateway.public_feed is not None and gateway.public_feed.topics_refused == 1
    good.cancel()


async def test_malformed_topic_ends_its_stream_with_invalid_argument(
    sandbox: Sandbox, gateway: Gateway
) -> None:
    """A channel the gateway would never form itself; driven through the feed directly."""
    assert gateway.public_feed is not None
    ended: list[GatewayError] = []

    class Listener:
        def on_event(self, topic: str, event: object) -> None: ...

        def on_status(self, state: str, topics: tuple[str, ...]) -> None: ...

        def on_rejected(self, topic: str, error: GatewayError) -> None:
            ended.append(error)

    await gateway.public_feed.add("rates.BTC_USDT", Listener())
    await eventually(lambda: len(ended) == 1)
    assert "not a valid ALP topic" in str(ended[0])


async def test_unsolicited_error_naming_a_topic_ends_nothing(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
        stream_pb2.StreamTradesRequest(pairs=["ETH_USDT"])
    )
    await first_message(call, predicate=lambda m: m.HasField("status"))
    for frame in (
        ["error", int(time.time()), "temporary problem with trade.ETH_USDT"],
        ["error", int(time.time()), "Topic does not exist"],  # nothing of ours is pending
        ["error", int(time.time()), "Invalid topic: trade.ETH_USDT", "unsubscribe"],
    ):
        await sandbox.inject_ws_frame(json.dumps(frame), topic="trade.ETH_USDT")
    await sandbox.inject_ws_frame(
        json.dumps(["t", int(time.time()), 5, "ETH_USDT", "1", "2000", "sell"]),
        topic="trade.ETH_USDT",
    )
    message = await first_message(call, predicate=lambda m: len(m.trades) > 0)
    assert message.trades[0].trade_id == 5
    assert gateway.public_feed is not None and gateway.public_feed.unsolicited_errors == 3
    assert gateway.public_feed.topics_refused == 0
    call.cancel()


@pytest.mark.parametrize("gateway_overrides", [{"ws__max_topics_per_connection": 30}])
async def test_too_many_topics_in_the_live_shape_moves_topics_to_another_socket(
    channel: grpc.aio.Channel,
    sandbox: Sandbox,
    gateway: Gateway,
    gateway_overrides: dict[str, Any],
) -> None:
    """The gateway believes 30 fit; ALP refuses the 21st with ["error", ts, "Too many topics",
    "subscribe"], naming no topic: the in-flight frame tells which, and it moves."""
    pairs = [p.name for p in sandbox.exchange.pairs()]
    topics = [("depth", p) for p in pairs] + [("trades", p) for p in pairs[:7]]
    assert len(topics) == 25
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    calls = [
        stub.StreamDepth(stream_pb2.StreamDepthRequest(pairs=[p]))
        if kind == "depth"
        else stub.StreamTrades(stream_pb2.StreamTradesRequest(pairs=[p]))
        for kind, p in topics
    ]
    for call in calls:
        message = await first_message(call, predicate=lambda m: m.HasField("status"), within=10)
        assert message.status.state == stream_pb2.STREAM_STATE_SUBSCRIBED
    counts = sorted(sandbox.stats.topics_per_connection())
    assert counts == [5, 20] and sum(counts) == 25  # every topic upstream once, none over 20
    for call in calls:
        call.cancel()


async def test_a_refused_topic_in_a_shared_frame_is_found_by_asking_singly(
    sandbox: Sandbox,
) -> None:
    """Topics queued before the socket opens go out in one frame; one unknown pair refuses the
    whole frame (live: all or nothing). The feed re-asks one topic a frame and ends only it."""
    refused: list[str] = []
    subscribed: list[str] = []

    class Listener:
        def on_event(self, topic: str, event: object) -> None: ...

        def on_status(self, state: str, topics: tuple[str, ...]) -> None:
            if state == SUBSCRIBED:
                subscribed.extend(topics)

        def on_rejected(self, topic: str, error: GatewayError) -> None:
            refused.append(topic)

    async with aiohttp.ClientSession() as session:
        feed = PublicFeed(session, WsSettings(url=sandbox.ws_url), linger_s=0.05)
        listener = Listener()
        for topic in ("trade.BTC_USDT", "trade.NOPE_USDT", "market_depth.ETH_USDT"):
            await feed.add(topic, listener)
        await eventually(lambda: len(refused) == 1 and len(subscribed) == 2)
        assert refused == ["trade.NOPE_USDT"]
        assert sorted(subscribed) == ["market_depth.ETH_USDT", "trade.BTC_USDT"]
        assert sorted(t for c in sandbox.ws.clients for t in c.topics) == sorted(subscribed)
        await feed.close()


async def test_order_book_works_from_depth_snapshots_with_diffs_silent(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    assert sandbox.ws.quirks.diff_silent  # live: diff.PAIR sends nothing
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderBook(
        stream_pb2.StreamOrderBookRequest(pair="BTC_USDT", depth=10)
    )
    book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}

    def apply(message: Any) -> None:
        for update in message.updates:
            if update.snapshot:
                book["bids"].clear()
                book["asks"].clear()
            for name, levels in (("bids", update.bids), ("asks", update.asks)):
                for level in levels:
                    if Decimal(level.amount) == 0:
                        book[name].pop(Decimal(level.price), None)
                    else:
                        book[name][Decimal(level.price)] = Decimal(level.amount)

    await first_message(call, predicate=lambda m: len(m.updates) > 0)
    await place(channel, BUY, "0.02", "25000")
    await place(channel, SELL, "0.03", "31000", account="desk-b")
    sandbox.publish_now()
    want = {"bids": {Decimal(25000): Decimal("0.02")}, "asks": {Decimal(31000): Decimal("0.03")}}

    async def until_equal() -> None:
        async for message in call:
            apply(message)
            if book == want:
                return

    await asyncio.wait_for(until_equal(), 10)
    call.cancel()


@pytest.mark.parametrize(
    "sandbox_config",
    [SandboxConfig(market=False, extensions=Extensions(cancel_by_ids_empty_202=True))],
)
async def test_cancel_by_ids_with_an_empty_2xx_is_accepted(channel: grpc.aio.Channel) -> None:
    order_id = await place(channel, BUY, "0.01", "20000")
    reply = await trading_pb2_grpc.TradingServiceStub(channel).CancelOrders(
        trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[order_id]))
    )
    assert reply.accepted and not reply.outcomes


async def test_cancel_of_an_unknown_order_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await trading_pb2_grpc.TradingServiceStub(channel).CancelOrders(
            trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[987654]))
        )
    assert info.value.code() is grpc.StatusCode.NOT_FOUND  # ALP 1011


async def test_revoked_login_is_not_reported_as_subscribed_and_recovers(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    """After a revocation the cached token is refused on the socket: the gateway fetches a new
    one and logs in again; consumers see RECONNECTING then RESYNCED and lose no update."""
    orders = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderUpdates(
        stream_pb2.StreamOrderUpdatesRequest()
    )
    first = await first_message(orders, predicate=lambda m: m.HasField("status"))
    assert first.status.state == stream_pb2.STREAM_STATE_SUBSCRIBED
    sandbox.revoke_tokens()
    await sandbox.drop_ws_connections()
    back = await first_message(
        orders,
        predicate=lambda m: (
            m.HasField("status") and m.status.state == stream_pb2.STREAM_STATE_RESYNCED
        ),
        within=10,
    )
    assert back.status.state == stream_pb2.STREAM_STATE_RESYNCED
    feed = gateway.private_feeds["demo"]
    assert feed.login_refusals >= 1
    ids = [await place(channel, BUY, "0.01", f"2000{i}") for i in range(3)]
    got: set[int] = set()

    async def collect() -> None:
        async for message in orders:
            got.update(o.order_id for o in message.orders)
            if set(ids) <= got:
                return

    await asyncio.wait_for(collect(), 10)
    orders.cancel()


async def test_login_refused_for_good_ends_private_streams(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    orders = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderUpdates(
        stream_pb2.StreamOrderUpdatesRequest()
    )
    await first_message(orders, predicate=lambda m: m.HasField("status"))
    sandbox.set_key_state("demo-key", "deleted")
    sandbox.revoke_tokens()
    await sandbox.drop_ws_connections()
    error = await ends_with(orders)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "WS_LOGIN_REFUSED"


async def test_login_survives_an_auth_outage_during_reconnect(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    orders = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderUpdates(
        stream_pb2.StreamOrderUpdatesRequest()
    )
    await first_message(orders, predicate=lambda m: m.HasField("status"))
    sandbox.faults.update({"error_rate": 1.0, "error_status": 503, "error_path_prefix": "/auth"})
    sandbox.revoke_tokens()
    await sandbox.drop_ws_connections()
    feed = gateway.private_feeds["demo"]
    await eventually(lambda: feed.login_failures >= 2, within=10)
    assert not feed.is_live()
    sandbox.faults.update({"error_rate": 0.0})
    await first_message(
        orders,
        predicate=lambda m: (
            m.HasField("status") and m.status.state == stream_pb2.STREAM_STATE_RESYNCED
        ),
        within=15,
    )
    ids = [await place(channel, BUY, "0.01", f"2100{i}") for i in range(8)]
    got: set[int] = set()

    async def collect() -> None:
        async for message in orders:
            got.update(o.order_id for o in message.orders)
            if set(ids) <= got:
                return

    await asyncio.wait_for(collect(), 10)
    orders.cancel()
