"""Request bytes that are not the method's protobuf end INVALID_ARGUMENT, never UNKNOWN with a trace."""

from __future__ import annotations

import logging

import grpc
import pytest
from alp.v3 import market_data_pb2

from gateway.app import Gateway

# bad varint, length past the end, missing value, invalid UTF-8 in field 1 (a string in both)
GARBAGE = (b"\xff\xff\xff", b"\x0a\x05ab", b"\x08", b"\x0a\x01\xff")
UNARY = "/alp.v3.MarketDataService/ListPairs"
STREAMING = "/alp.v3.StreamService/StreamTrades"


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "DecodeError" not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_undecodable_unary_request_is_invalid_argument(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.INFO)
    call = channel.unary_unary(UNARY, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(garbage, metadata=(("x-request-id", "decode-1"),), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "request could not be decoded"
    assert ("x-request-id", "decode-1") in tuple(info.value.trailing_metadata() or ())
    _no_tracebacks(caplog)
    assert f"rpc {UNARY} INVALID_ARGUMENT" in caplog.text  # one access-log line, like any call


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_undecodable_streaming_request_is_invalid_argument(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.INFO)
    call = channel.unary_stream(STREAMING, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call(garbage, timeout=5):
            pytest.fail("no message expected")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "request could not be decoded"
    _no_tracebacks(caplog)
    assert f"rpc {STREAMING} INVALID_ARGUMENT" in caplog.text


async def test_decodable_request_still_served_after_garbage(
    channel: grpc.aio.Channel, gateway: Gateway
) -> None:
    raw = channel.unary_unary(UNARY, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError):
        await raw(b"\xff\xff\xff", timeout=5)
    reply = await raw(market_data_pb2.ListPairsRequest().SerializeToString(), timeout=5)
    assert market_data_pb2.ListPairsResponse.FromString(reply).pairs
