"""Order books ALP refuses end at once with ALP's answer; an unencodable depth frame is dropped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc

from gateway.app import Gateway
from gateway.errors import GatewayError, TopicRefused, UpstreamHttpError
from gateway.exchange.book_keeper import BookKeeper
from gateway.exchange.rest_client import RestClient
from gateway.exchange.upstream import Upstream
from gateway.sandbox import Sandbox
from tests.gateway.status_details import details_of
from tests.gateway.test_streams import eventually, first_message, place

BUY = common_pb2.ORDER_SIDE_BUY


def stub(channel: grpc.aio.Channel) -> stream_pb2_grpc.StreamServiceStub:
    return stream_pb2_grpc.StreamServiceStub(channel)


async def settled(gateway: Gateway) -> int:
    """Task count once no keeper, feed listener or upstream socket is left."""
    feed, streams = gateway.public_feed, gateway.streams
    assert feed is not None and streams is not None
    await eventually(
        lambda: (
            streams.keeper_count() == 0 and feed.listener_count() == 0 and not feed.connections()
        ),
        within=5,
    )
    await asyncio.sleep(0)
    return len(asyncio.all_tasks())


async def tasks_return_to(count: int) -> None:
    """Closing sockets finish their handshakes in their own time; a leak never gets back down."""
    await eventually(lambda: len(asyncio.all_tasks()) <= count, within=10)
    assert len(asyncio.all_tasks()) == count


async def warm_up(channel: grpc.aio.Channel, gateway: Gateway) -> int:
    """One clean book stream first, so long-lived owners it starts (the feed's linger loop, a
    keep-alive HTTP connection) are in the baseline."""
    call = stub(channel).StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="BTC_USDT"))
    await first_message(call, predicate=lambda m: len(m.updates) > 0)
    call.cancel()
    return await settled(gateway)


async def error_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    return info.value


async def test_unknown_pair_ends_not_found_at_once_and_leaks_nothing(
    channel: grpc.aio.Channel, gateway: Gateway, sandbox: Sandbox
) -> None:
    assert gateway.streams is not None
    assert gateway.streams._seed_timeout >= 10  # the old failure mode: UNAVAILABLE after 10 s
    before = await warm_up(channel, gateway)

    loop = asyncio.get_running_loop()
    started = loop.time()
    calls = [
        stub(channel).StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="NOPE_USDT"))
        for _ in range(3)
    ]
    errors = await asyncio.wait_for(asyncio.gather(*(error_of(c) for c in calls)), 2.0)
    assert loop.time() - started < 2.0
    for error in errors:
        details = details_of(error)
        assert details.code == grpc.StatusCode.NOT_FOUND, details
        assert details.error_info is not None
        assert details.error_info.reason == "TOPIC_NOT_FOUND"
        assert details.error_info.domain == "alp.com"
        assert "NOPE_USDT" in details.error_info.metadata["topic"]

    await tasks_return_to(before)
    assert gateway.streams.keeper_count() == 0

    # Not remembered as refused: a listed pair right after streams normally.
    call = stub(channel).StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="BTC_USDT"))
    first = await first_message(call, predicate=lambda m: len(m.updates) > 0)
    assert first.updates[0].snapshot and first.updates[0].sequence == 1
    call.cancel()


async def test_subscribe_with_an_unknown_order_book_ends_not_found(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    topic = stream_pb2.Topic(channel=stream_pb2.CHANNEL_ORDER_BOOK, pair="NOPE_USDT")
    call = stub(channel).Subscribe(stream_pb2.SubscribeRequest(topics=[topic]))
    error = await asyncio.wait_for(error_of(call), 2.0)
    details = details_of(error)
    assert details.code == grpc.StatusCode.NOT_FOUND
    assert details.error_info is not None and details.error_info.reason == "TOPIC_NOT_FOUND"
    await settled(gateway)


async def test_a_refusal_after_seeding_ends_the_live_streams_and_releases_the_keeper(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    """E.g. a pair delisted while streamed: ALP refuses it when the topics are resubscribed."""
    assert gateway.streams is not None
    before = await warm_up(channel, gateway)
    calls = [
        stub(channel).StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="BTC_USDT"))
        for _ in range(2)
    ]
    for call in calls:
        await first_message(call, predicate=lambda m: len(m.updates) > 0)
    keeper = gateway.streams._keepers["BTC_USDT"]
    keeper.on_rejected(
        "market_depth.BTC_USDT",
        TopicRefused("market_depth.BTC_USDT", "Topic does not exist", not_found=True),
    )
    for call in calls:
        error = await asyncio.wait_for(error_of(call), 2.0)
        assert error.code() == grpc.StatusCode.NOT_FOUND
    await tasks_return_to(before)


class RefusingOrderBook:
    """GET /orderbook answering `status` with an ALP error body."""

    def __init__(self) -> None:
        self.status = 404
        self.code = "NOT_FOUND"
        self.served = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def orderbook(self, request: web.Request) -> web.StreamResponse:
        self.served += 1
        body = json.dumps({"code": self.code, "message": "pair delisted"})
        headers = {"Retry-After": "0"} if self.status == 429 else None
        return web.Response(
            text=body, status=self.status, content_type="application/json", headers=headers
        )

    async def __aenter__(self) -> RefusingOrderBook:
        app = web.Application()
        app.router.add_get("/api/v3/orderbook", self.orderbook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/api/v3"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


class Watcher:
    def __init__(self) -> None:
        self.refused: list[GatewayError] = []

    def on_book(self, keeper: BookKeeper, *, resync: bool, time_s: Decimal | None) -> None:
        pass

    def on_book_status(self, state: str, topics: tuple[str, ...]) -> None:
        pass

    def on_book_refused(self, keeper: BookKeeper, error: GatewayError) -> None:
        self.refused.append(error)


@pytest.fixture
async def refusing() -> AsyncIterator[RefusingOrderBook]:
    async with RefusingOrderBook() as running:
        yield running


def keeper_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").startswith("BookKeeper.")
    ]


async def test_a_4xx_seed_answer_for_a_listed_pair_is_alps_answer(
    gateway: Gateway, refusing: RefusingOrderBook
) -> None:
    """The WebSocket acknowledges the topics, GET /orderbook says 404: that answer ends it."""
    assert gateway.public_feed is not None
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(RestClient(refusing.url, session), {}, "")
        keeper = BookKeeper("BTC_USDT", gateway.public_feed, upstream)
        watcher = Watcher()
        keeper.watch(watcher)
        await keeper.start()
        with pytest.raises(UpstreamHttpError) as info:
            await keeper.wait_seeded(5)
        assert info.value.http_status == 404
        assert refusing.served == 1  # an answer, not a failure to retry
        assert watcher.refused == [info.value]
        assert keeper_tasks() == []
        with pytest.raises(UpstreamHttpError):  # and for anyone who asks later
            await keeper.wait_seeded(5)
        await keeper.stop()


@pytest.mark.parametrize("status,code", [(429, "TOO_MANY_REQUESTS"), (404, "3004")])
async def test_transient_4xx_seed_answers_are_retried(
    gateway: Gateway, refusing: RefusingOrderBook, status: int, code: str
) -> None:
    assert gateway.public_feed is not None
    refusing.status, refusing.code = status, code
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(RestClient(refusing.url, session), {}, "")
        keeper = BookKeeper("BTC_USDT", gateway.public_feed, upstream, retry_cap_s=0.05)
        await keeper.start()
        await eventually(lambda: refusing.served >= 3)
        assert keeper.refusal is None and not keeper.seeded
        await keeper.stop()
        assert keeper_tasks() == []


def depth_frame(ts: str, bids: list[tuple[str, str]], pair: str = "BTC_USDT") -> str:
    body = {
        "Asks": [],
        "Bids": [[p, a] for p, a in bids],
        "Symbol": pair,
        "TotalAsks": "0",
        "TotalBids": str(sum(Decimal(a) for _, a in bids)),
    }
    return f'["p", {ts}, {json.dumps(body)}]'


async def test_an_unencodable_depth_frame_is_dropped_without_a_gap(
    channel: grpc.aio.Channel, gateway: Gateway, sandbox: Sandbox
) -> None:
    assert gateway.hub is not None and gateway.public_feed is not None
    await place(channel, BUY, "0.5", "29000", account="desk-b")
    call = stub(channel).StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="BTC_USDT"))
    first = await first_message(call, predicate=lambda m: len(m.updates) > 0)
    assert [u.sequence for u in first.updates] == [1]
    feed = gateway.public_feed
    await eventually(
        lambda: all(feed.is_live(t) for t in ("market_depth.BTC_USDT", "diff.BTC_USDT"))
    )
    connections = gateway.public_feed.connection_objects()
    dropped = gateway.hub.stats.unencodable

    # A change only the bad frame carries: the consumer must never see 28900 or a skipped number.
    frame = depth_frame("1e30", [("29000", "0.5"), ("28900", "0.3")])
    assert await sandbox.inject_ws_frame(frame, topic="market_depth.BTC_USDT") == 1
    await eventually(lambda: gateway.hub is not None and gateway.hub.stats.unencodable > dropped)

    await place(channel, BUY, "0.1", "29100", account="desk-b")
    sandbox.publish_now()  # depth only on change: this one is real
    seen: list[Any] = []

    async def until_29100() -> None:
        async for message in call:
            if message.HasField("status"):  # SUBSCRIBED may come after the first snapshot
                assert message.status.state == stream_pb2.STREAM_STATE_SUBSCRIBED, message
            seen.extend(message.updates)
            if any(level.price == "29100" for u in message.updates for level in u.bids):
                return

    await asyncio.wait_for(until_29100(), 5)
    assert [u.sequence for u in seen] == list(range(2, 2 + len(seen)))
    assert not any(u.snapshot for u in seen)
    levels = {Decimal(level.price): Decimal(level.amount) for u in seen for level in u.bids}
    assert levels == {Decimal("29100"): Decimal("0.1")}  # 28900 came and went unseen
    assert feed.connection_objects() == connections  # the socket was never reset
    call.cancel()
