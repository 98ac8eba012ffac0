"""Events the gateway cannot encode are dropped and counted; the upstream socket and every other
event on it are left alone."""

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
from gateway.rpc.stream_hub import StreamHub
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


def test_drop_counters_are_exported_as_metrics_when_the_state_carries_them() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from gateway.metrics import StateCollector

    def scrape(state: dict[str, Any]) -> str:
        registry = CollectorRegistry()
        registry.register(StateCollector(lambda: state))
        return generate_latest(registry).decode()

    text = scrape({"events_unencodable": 1})
    assert "alp_gateway_stream_events_unencodable_total 1.0" in text
    assert "alp_gateway_stream_events_unencodable" not in scrape({})  # never a fake zero
