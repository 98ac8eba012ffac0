"""Events the gateway cannot deliver (unencodable, or over the message cap) are dropped and counted;
the upstream socket and every other event on it are left alone, and no message exceeds the cap."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import grpc
import pytest
from alp.v3 import stream_pb2, stream_pb2_grpc

from gateway.app import Gateway
from gateway.core import ws_codec
from gateway.rpc import stream_encode as enc
from gateway.rpc.delivery import MESSAGE_CAP_BYTES, Delivery, Policy
from gateway.rpc.stream_hub import CHANNELS, StreamHub, Target, TopicChannel
from gateway.sandbox import Sandbox
from tests.gateway.test_streams import first_message

TOPIC = "trade.BTC_USDT"
GRPC_DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024


def trade_frame(trade_id: int, *, ts: Any = None, side: str = "buy") -> str:
    stamp = int(time.time()) if ts is None else ts
    return json.dumps(["t", stamp, trade_id, "BTC_USDT", "0.1", "30000.5", side])


def too_big_id(n: int = 0) -> str:
    return trade_frame(2**63 + n)


def too_late(n: int = 0) -> str:
    return trade_frame(5 + n, ts=10**30).replace(str(10**30), "1e30")


UNENCODABLE = {"trade id 2^63": too_big_id(), "timestamp 1e30": too_late()}


def hub_of(gateway: Gateway) -> StreamHub:
    assert gateway.hub is not None
    return gateway.hub


def disconnects(gateway: Gateway) -> int:
    assert gateway.public_feed is not None
    return sum(c.stats.disconnects for c in gateway.public_feed.connection_objects().values())


async def open_trades(channel: grpc.aio.Channel) -> Any:
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
        stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"])
    )
    first = await first_message(call, predicate=lambda m: m.HasField("status"))
    assert first.status.state == stream_pb2.STREAM_STATE_SUBSCRIBED
    return call


async def read_until_trade(call: Any, trade_id: int) -> list[Any]:
    """Every message up to and including the one carrying `trade_id`."""
    seen: list[Any] = []

    async def read() -> None:
        async for message in call:
            seen.append(message)
            if any(t.trade_id == trade_id for t in message.trades):
                return
        raise AssertionError("stream ended")

    await asyncio.wait_for(read(), 10)
    return seen


@pytest.mark.parametrize("frame", UNENCODABLE.values(), ids=UNENCODABLE.keys())
async def test_unencodable_event_is_dropped_counted_and_the_socket_left_alone(
    channel: grpc.aio.Channel,
    sandbox: Sandbox,
    gateway: Gateway,
    caplog: pytest.LogCaptureFixture,
    frame: str,
) -> None:
    caplog.set_level(logging.INFO)
    call = await open_trades(channel)
    assert await sandbox.inject_ws_frame(frame, topic=TOPIC) == 1
    assert await sandbox.inject_ws_frame(trade_frame(7), topic=TOPIC) == 1
    messages = await read_until_trade(call, 7)
    assert [t.trade_id for m in messages for t in m.trades] == [7]
    assert not [m.status for m in messages if m.HasField("status")]  # no RECONNECTING
    assert hub_of(gateway).stats.unencodable == 1
    assert disconnects(gateway) == 0
    warnings = [r.getMessage() for r in caplog.records if "cannot be encoded" in r.getMessage()]
    assert len(warnings) == 1 and TOPIC in warnings[0] and "ValueError" in warnings[0]
    assert not [r for r in caplog.records if r.name == "gateway.exchange.ws_connection"]
    call.cancel()


async def test_repeated_unencodable_events_are_each_counted_and_logged_once(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call = await open_trades(channel)
    for frame in (too_big_id(0), too_late(0), too_big_id(1), too_late(1)):  # distinct trade ids
        await sandbox.inject_ws_frame(frame, topic=TOPIC)
    await sandbox.inject_ws_frame(trade_frame(8), topic=TOPIC)
    messages = await read_until_trade(call, 8)
    assert [t.trade_id for m in messages for t in m.trades] == [8]
    assert hub_of(gateway).stats.unencodable == 4
    assert disconnects(gateway) == 0
    warnings = [r for r in caplog.records if "cannot be encoded" in r.getMessage()]
    assert len(warnings) == 1
    call.cancel()


async def test_event_over_the_message_cap_is_dropped_and_counted(
    gateway: Gateway, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A client with gRPC's default 4 MiB receive limit, as every consumer has unless it opts out.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        call = await open_trades(channel)
        huge = trade_frame(9, side="x" * GRPC_DEFAULT_RECEIVE_LIMIT)  # would kill this client
        assert await sandbox.inject_ws_frame(huge, topic=TOPIC) == 1
        assert await sandbox.inject_ws_frame(trade_frame(10), topic=TOPIC) == 1
        messages = await read_until_trade(call, 10)
        assert [t.trade_id for m in messages for t in m.trades] == [10]
        assert not [m.status for m in messages if m.HasField("status")]
        assert hub_of(gateway).stats.oversize == 1
        assert hub_of(gateway).stats.unencodable == 0
        assert disconnects(gateway) == 0
        warnings = [r.getMessage() for r in caplog.records if "message cap" in r.getMessage()]
        assert len(warnings) == 1 and TOPIC in warnings[0]
        call.cancel()


async def test_burst_larger_than_the_cap_reaches_a_default_client_in_capped_messages(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    count, side = 60, "x" * 100_000  # 6 MB of trades, each well under the cap
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        raw = channel.unary_stream(
            "/alp.v3.StreamService/StreamTrades",
            request_serializer=None,
            response_deserializer=None,
        )
        call = raw(stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"]).SerializeToString())
        sizes: list[int] = []
        ids: list[int] = []
        subscribed = asyncio.Event()

        async def read() -> None:
            async for message in call:
                subscribed.set()
                sizes.append(len(message))
                parsed = stream_pb2.StreamTradesResponse.FromString(message)
                ids.extend(t.trade_id for t in parsed.trades)
                if len(ids) >= count:
                    return

        reader = asyncio.create_task(read())
        await asyncio.wait_for(subscribed.wait(), 5)
        for trade_id in range(100, 100 + count):
            await sandbox.inject_ws_frame(trade_frame(trade_id, side=side), topic=TOPIC)
        await asyncio.wait_for(reader, 20)
    assert ids == list(range(100, 100 + count))
    assert max(sizes) <= MESSAGE_CAP_BYTES < GRPC_DEFAULT_RECEIVE_LIMIT


# -- the same guarantees at the hub, with one burst built synchronously (no socket timing) --------


def _trade(trade_id: int, side: str = "buy") -> Any:
    return ws_codec.decode_frame(trade_frame(trade_id, side=side), ws_codec.CodecStats())


async def _drain(delivery: Delivery, events: int) -> list[bytes]:
    out: list[bytes] = []
    total = 0
    async for message in delivery.messages():
        out.append(message)
        total += len(stream_pb2.StreamTradesResponse.FromString(message).trades)
        if total >= events:
            return out
    return out


async def test_one_burst_over_the_cap_is_split_into_capped_messages() -> None:
    kind, encoder, split = CHANNELS["trade"]
    channel = TopicChannel(kind, encoder, split)
    delivery = Delivery(TOPIC, Policy.LOSSLESS, limit=10_000)
    channel.add(delivery, Target(0, None, conflate=False))
    side = "x" * 100_000
    for trade_id in range(60):  # one upstream burst: nothing is flushed until the loop turns
        channel.on_event(TOPIC, _trade(trade_id, side))
    channel.flush()
    messages = await asyncio.wait_for(_drain(delivery, 60), 5)
    ids = [
        t.trade_id for m in messages for t in stream_pb2.StreamTradesResponse.FromString(m).trades
    ]
    assert ids == list(range(60))
    assert len(messages) >= 2 and max(len(m) for m in messages) <= MESSAGE_CAP_BYTES


async def test_filtered_and_conflating_consumers_drop_undeliverable_events_too() -> None:
    kind, encoder, split = CHANNELS["trade"]
    channel = TopicChannel(kind, encoder, split)
    delivery = Delivery(TOPIC, Policy.CONFLATE, limit=10_000, skipped_field=enc.SKIPPED_FIELD)
    channel.add(delivery, Target(0, frozenset({"BTC_USDT"}), conflate=False))
    channel.on_event(
        TOPIC, ws_codec.decode_frame(UNENCODABLE["trade id 2^63"], ws_codec.CodecStats())
    )
    channel.on_event(TOPIC, _trade(1, "x" * (MESSAGE_CAP_BYTES + 1)))
    channel.on_event(TOPIC, _trade(2))
    messages = await asyncio.wait_for(_drain(delivery, 1), 5)
    ids = [
        t.trade_id for m in messages for t in stream_pb2.StreamTradesResponse.FromString(m).trades
    ]
    assert ids == [2]
    assert (channel.stats.unencodable, channel.stats.oversize) == (1, 1)


async def test_delivery_never_emits_a_message_over_its_cap() -> None:
    cap = 1000
    delivery = Delivery(TOPIC, Policy.LOSSLESS, limit=100, max_message_bytes=cap)
    small = enc.channel_chunk(stream_pb2.TradeEvent(trade_id=1).SerializeToString())
    big = enc.channel_chunk(
        stream_pb2.TradeEvent(trade_id=2, side_raw="x" * cap).SerializeToString()
    )
    for chunk in (small, big, small, small):
        delivery.offer(chunk)
    messages = await asyncio.wait_for(_drain(delivery, 3), 5)
    ids = [
        t.trade_id for m in messages for t in stream_pb2.StreamTradesResponse.FromString(m).trades
    ]
    assert ids == [1, 1, 1]
    assert max(len(m) for m in messages) <= cap
    assert delivery.dropped_oversize == 1


def test_drop_counters_are_exported_as_metrics_when_the_state_carries_them() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from gateway.metrics import StateCollector

    def scrape(state: dict[str, Any]) -> str:
        registry = CollectorRegistry()
        registry.register(StateCollector(lambda: state))
        return generate_latest(registry).decode()

    text = scrape({"events_unencodable": 1, "events_oversize": 2})
    assert "alp_gateway_stream_events_unencodable_total 1.0" in text
    assert "alp_gateway_stream_events_oversize_total 2.0" in text
    assert "alp_gateway_stream_events_unencodable" not in scrape({})  # never a fake zero
