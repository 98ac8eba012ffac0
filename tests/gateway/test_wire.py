"""Pre-encoded batches decode to exactly the message protobuf itself would build."""

from __future__ import annotations

from alp.v3 import stream_pb2
from hypothesis import given
from hypothesis import strategies as st

from gateway.rpc.wire import length_delimited, uint_field, varint

trades = st.builds(
    stream_pb2.TradeEvent,
    trade_id=st.integers(0, 2**63 - 1),
    pair=st.sampled_from(["BTC_USDT", "ETH_BTC"]),
    amount=st.decimals(min_value=0, max_value=10**9, places=8).map(str),
    price=st.decimals(min_value=0, max_value=10**9, places=8).map(str),
)


@given(st.lists(trades, max_size=50))
def test_concatenated_events_equal_protobuf_batch(events: list[stream_pb2.TradeEvent]) -> None:
    encoded = b"".join(length_delimited(1, e.SerializeToString()) for e in events)
    assert encoded == stream_pb2.StreamTradesResponse(trades=events).SerializeToString()
    assert list(stream_pb2.StreamTradesResponse.FromString(encoded).trades) == events


@given(st.integers(0, 2**64 - 1))
def test_varint_roundtrip(value: int) -> None:
    message = stream_pb2.StreamTickersResponse(skipped=value)
    assert uint_field(3, value) == message.SerializeToString()
    assert len(varint(value)) <= 10
