"""A StreamOrderBook that joins a book whose topics are already live still hears SUBSCRIBED,
after its first snapshot (previously only the first consumer of a book was told)."""

from __future__ import annotations

from typing import Any

import grpc
from alp.v3 import stream_pb2, stream_pb2_grpc

from tests.gateway.test_streams import first_message


async def test_a_late_joiner_gets_its_snapshot_then_subscribed(channel: grpc.aio.Channel) -> None:
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    request = stream_pb2.StreamOrderBookRequest(pair="BTC_USDT", depth=10)
    first = stub.StreamOrderBook(request)
    await first_message(first, predicate=lambda m: m.HasField("status"), within=10)
    late = stub.StreamOrderBook(request)
    seen: list[str] = []

    def record(message: Any) -> bool:
        if message.HasField("status"):
            seen.append("status")
            return True
        if message.updates:
            seen.append("snapshot" if message.updates[0].snapshot else "update")
        return False

    status = await first_message(late, predicate=record, within=10)
    assert status.status.state == stream_pb2.STREAM_STATE_SUBSCRIBED
    assert seen[0] == "snapshot" and seen[-1] == "status"
    first.cancel()
    late.cancel()
