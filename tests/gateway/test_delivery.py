"""Delivery: adaptive batching, statuses in order, conflation counts, overflow endings."""

from __future__ import annotations

import asyncio

import pytest
from alp.v3 import stream_pb2

from gateway.errors import Draining, SlowConsumer
from gateway.rpc.delivery import Delivery, Policy
from gateway.rpc.wire import length_delimited


def _trade(i: int) -> bytes:
    return length_delimited(1, stream_pb2.TradeEvent(trade_id=i).SerializeToString())


def _status(state: int) -> bytes:
    return stream_pb2.StreamTradesResponse(
        status=stream_pb2.StreamStatus(state=state)
    ).SerializeToString()


async def _take(delivery: Delivery, n: int) -> list[bytes]:
    out: list[bytes] = []
    async for message in delivery.messages():
        out.append(message)
        if len(out) == n:
            break
    return out


async def test_backlog_is_one_message_and_status_splits_runs() -> None:
    delivery = Delivery("trades", Policy.LOSSLESS, limit=100)
    for i in range(5):
        delivery.offer(_trade(i))
    delivery.offer_status(_status(stream_pb2.STREAM_STATE_RECONNECTING))
    delivery.offer(_trade(5))
    messages = await _take(delivery, 3)
    parsed = [stream_pb2.StreamTradesResponse.FromString(m) for m in messages]
    assert [t.trade_id for t in parsed[0].trades] == [0, 1, 2, 3, 4]
    assert parsed[1].status.state == stream_pb2.STREAM_STATE_RECONNECTING
    assert not parsed[1].trades
    assert [t.trade_id for t in parsed[2].trades] == [5]
    assert delivery.delivered_events == 6


async def test_keeping_up_gives_one_event_per_message() -> None:
    delivery = Delivery("trades", Policy.LOSSLESS, limit=100)
    received: list[int] = []

    async def consume() -> None:
        async for message in delivery.messages():
            received.append(len(stream_pb2.StreamTradesResponse.FromString(message).trades))
            if sum(received) == 3:
                return

    task = asyncio.create_task(consume())
    for i in range(3):
        await asyncio.sleep(0.01)
        delivery.offer(_trade(i))
    await asyncio.wait_for(task, 2)
    assert received == [1, 1, 1]


async def test_lossless_overflow_ends_with_count() -> None:
    delivery = Delivery("trades", Policy.LOSSLESS, limit=3)
    for i in range(5):
        delivery.offer(_trade(i))
    with pytest.raises(SlowConsumer) as info:
        await _take(delivery, 1)
    assert info.value.lost == 5
    assert "5 events" in str(info.value)


async def test_conflation_keeps_newest_and_reports_skipped() -> None:
    delivery = Delivery("tickers", Policy.CONFLATE, limit=10, skipped_field=3)
    for i in range(4):
        ticker = stream_pb2.TickerUpdate(pair="BTC_USDT", close=str(i))
        delivery.offer(length_delimited(1, ticker.SerializeToString()), key="BTC_USDT")
    delivery.offer(
        length_delimited(1, stream_pb2.TickerUpdate(pair="ETH_USDT").SerializeToString()),
        key="ETH_USDT",
    )
    (message,) = await _take(delivery, 1)
    parsed = stream_pb2.StreamTickersResponse.FromString(message)
    assert [(t.pair, t.close) for t in parsed.tickers] == [("BTC_USDT", "3"), ("ETH_USDT", "")]
    assert parsed.skipped == 3


async def test_resnapshot_replaces_backlog() -> None:
    snapshots = [length_delimited(1, b"")]
    delivery = Delivery(
        "book", Policy.RESNAPSHOT, limit=2, skipped_field=3, resnapshot=lambda: snapshots
    )
    for i in range(3):
        delivery.offer(_trade(i))
    (message,) = await _take(delivery, 1)
    parsed = stream_pb2.StreamOrderBookResponse.FromString(message)
    assert len(parsed.updates) == 1
    assert parsed.skipped == 3
    assert delivery.resnapshots == 1


async def test_end_after_pending_messages() -> None:
    delivery = Delivery("trades", Policy.LOSSLESS, limit=10)
    delivery.offer(_trade(1))
    delivery.end(Draining())
    seen: list[bytes] = []
    with pytest.raises(Draining):
        async for message in delivery.messages():
            seen.append(message)
    assert len(seen) == 1
