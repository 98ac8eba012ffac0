"""Joining streams under contention: a consumer cancelled (deadline, client gone) while its join
waits for a busy feed leaves no dead topic, no leaked consumer or keeper, and the consumers beside it
are subscribed and told so once. Each test names the interleaving it drives.

Where an interleaving needs the public feed to be busy (a reconnect resubscribing, other streams
joining), the test holds the feed's own lock for a moment, which is what contention does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from alp.v3 import stream_pb2, stream_pb2_grpc

from gateway.app import Gateway
from tests.gateway.test_streams import eventually, first_message

RECONNECTING = stream_pb2.STREAM_STATE_RECONNECTING
RESYNCED = stream_pb2.STREAM_STATE_RESYNCED
SUBSCRIBED = stream_pb2.STREAM_STATE_SUBSCRIBED
PAIR = "BTC_USDT"


class Recorder:
    """A stream read in the background: statuses in order, and what its messages carried."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.states: list[int] = []
        self.messages: list[Any] = []
        self.ended: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self.messages.append(message)
                if message.HasField("status"):
                    self.states.append(message.status.state)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.ended = exc

    def updates(self) -> list[Any]:
        return [u for m in self.messages for u in getattr(m, "updates", ())]

    async def wait(self, check: Callable[[], bool], within: float = 5.0) -> None:
        try:
            await eventually(check, within)
        except AssertionError:
            raise AssertionError(f"states {self.states}, ended {self.ended}") from None

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _waiting_on(lock: asyncio.Lock) -> bool:
    """Someone is queued on the lock (the stream's join reached it)."""
    return bool(lock._waiters)  # type: ignore[attr-defined]


# -- 1. stream_hub._join: a cancel while the first join of a topic waits orphans the topic --------
async def test_cancel_during_first_join_does_not_leave_the_topic_dead(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    """The first consumer of trade.ETH_USDT is cancelled (deadline, client gone) while its join
    waits for the busy feed. A later consumer of the same topic must still be subscribed."""
    feed, hub = gateway.public_feed, gateway.hub
    assert feed is not None and hub is not None
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    request = stream_pb2.StreamTradesRequest(pairs=["ETH_USDT"])
    await feed._lock.acquire()  # the feed is busy (another join, a reconnect's resubscribe)
    try:
        first = stub.StreamTrades(request)
        await eventually(lambda: _waiting_on(feed._lock))  # joining, awaiting the feed
        first.cancel()
        await asyncio.sleep(0.3)  # the handler got its cancel
    finally:
        feed._lock.release()
    later = Recorder(stub.StreamTrades(request))
    try:
        await later.wait(lambda: SUBSCRIBED in later.states, within=5.0)
    finally:
        await later.close()


async def test_cancel_during_first_join_leaks_no_consumer(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    feed, hub = gateway.public_feed, gateway.hub
    assert feed is not None and hub is not None
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    await feed._lock.acquire()
    try:
        call = stub.StreamTrades(stream_pb2.StreamTradesRequest(pairs=["ETH_USDT"]))
        await eventually(lambda: _waiting_on(feed._lock))
        call.cancel()
        await asyncio.sleep(0.3)
    finally:
        feed._lock.release()
    assert gateway.streams is not None
    await eventually(lambda: gateway.streams.active_streams == 0)  # type: ignore[union-attr]
    await eventually(lambda: hub.consumer_count() == 0 and hub.channel_count() == 0, within=3.0)


# -- 2. stream._acquire_keeper: a cancel during keeper.start() leaks a keeper that never seeds ----
async def test_cancel_during_keeper_start_leaves_the_book_usable(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    feed, streams = gateway.public_feed, gateway.streams
    assert feed is not None and streams is not None
    streams._seed_timeout = 2.0
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    request = stream_pb2.StreamOrderBookRequest(pair="ETH_USDT")
    await feed._lock.acquire()
    try:
        first = stub.StreamOrderBook(request)
        await eventually(lambda: _waiting_on(feed._lock))  # keeper.start() awaits the feed
        first.cancel()
        await asyncio.sleep(0.3)
    finally:
        feed._lock.release()
    later = stub.StreamOrderBook(request)
    try:
        message = await first_message(later, predicate=lambda m: len(m.updates) > 0, within=5.0)
        assert message.updates[0].snapshot
    finally:
        later.cancel()


async def test_cancel_during_keeper_start_leaks_no_keeper(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    feed, streams = gateway.public_feed, gateway.streams
    assert feed is not None and streams is not None
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    await feed._lock.acquire()
    try:
        call = stub.StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="ETH_USDT"))
        await eventually(lambda: _waiting_on(feed._lock))
        call.cancel()
        await asyncio.sleep(0.3)
    finally:
        feed._lock.release()
    await eventually(lambda: streams.active_streams == 0)
    await eventually(lambda: streams.keeper_count() == 0, within=3.0)


# -- 6. stream_hub._join: a second joiner during the first join hears SUBSCRIBED twice ------------
@pytest.mark.parametrize("gateway_overrides", [{"ws__linger_s": 10.0}])
async def test_joiners_of_a_live_topic_hear_subscribed_once(
    channel: grpc.aio.Channel, gateway: Gateway, gateway_overrides: Any
) -> None:
    """trade.ETH_USDT is live upstream (lingering after its last consumer). Two consumers join at
    once while the feed is busy: the second is told SUBSCRIBED by the hub (topic live), then again
    when the first one's registration with the feed completes."""
    feed, hub = gateway.public_feed, gateway.hub
    assert feed is not None and hub is not None
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    request = stream_pb2.StreamTradesRequest(pairs=["ETH_USDT"])
    warm = Recorder(stub.StreamTrades(request))
    await warm.wait(lambda: SUBSCRIBED in warm.states)
    await warm.close()
    await eventually(lambda: hub.channel_count() == 0)
    assert feed.is_live("trade.ETH_USDT")  # lingering
    await feed._lock.acquire()
    try:
        a = Recorder(stub.StreamTrades(request))
        await eventually(lambda: hub.consumer_count() == 1)
        b = Recorder(stub.StreamTrades(request))
        await eventually(lambda: hub.consumer_count() == 2)
    finally:
        feed._lock.release()
    try:
        await a.wait(lambda: SUBSCRIBED in a.states)
        await b.wait(lambda: SUBSCRIBED in b.states)
        await asyncio.sleep(0.5)
        assert a.states == [SUBSCRIBED]
        assert b.states == [SUBSCRIBED]
    finally:
        await a.close()
        await b.close()


async def test_a_consumer_that_joined_beside_a_cancelled_first_joiner_is_subscribed(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    """A (first joiner of trade.ETH_USDT) waits for the busy feed; B joins the same channel
    meanwhile (no wait: the channel exists); A is cancelled. B's channel must still be registered
    with the feed, or B waits in silence forever."""
    feed, hub = gateway.public_feed, gateway.hub
    assert feed is not None and hub is not None
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    request = stream_pb2.StreamTradesRequest(pairs=["ETH_USDT"])
    await feed._lock.acquire()
    try:
        a = stub.StreamTrades(request)
        await eventually(lambda: _waiting_on(feed._lock))
        b = Recorder(stub.StreamTrades(request))
        await eventually(lambda: hub.consumer_count() == 2)
        a.cancel()
        await asyncio.sleep(0.3)
    finally:
        feed._lock.release()
    try:
        await b.wait(lambda: SUBSCRIBED in b.states, within=5.0)
    finally:
        await b.close()
