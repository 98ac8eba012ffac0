"""Hostile input: arbitrary requests to every unary RPC only ever get OK or a deliberate status."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from alp.v3 import account_pb2, market_data_pb2, trading_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.sandbox import Sandbox, SandboxConfig
from tests.gateway.conftest import gateway_config

SERVICES = [
    m.DESCRIPTOR.services_by_name[name]
    for m, name in (
        (market_data_pb2, "MarketDataService"),
        (account_pb2, "AccountService"),
        (trading_pb2, "TradingService"),
    )
]
METHODS = [(s.full_name, m) for s in SERVICES for m in s.methods]
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["BTC_USDT", "ETH_BTC", "NOPE_USDT", "0.1", "1e5", "-1", "NaN", "20000", "0"]),
    st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,10})?", fullmatch=True),
)
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: TEXT,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
}


def message_of(
    descriptor: Descriptor, cls: type[Message], depth: int = 0
) -> st.SearchStrategy[Message]:
    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 2 or field.message_type.GetOptions().map_entry:
                    continue
                sub_cls = type(getattr(message, field.name)) if not field.is_repeated else None
                if field.is_repeated:
                    continue
                if field.message_type.full_name == "google.protobuf.Timestamp":
                    getattr(message, field.name).seconds = draw(st.integers(-(10**11), 10**11))
                    continue
                value = draw(message_of(field.message_type, sub_cls, depth + 1))  # type: ignore[arg-type]
                getattr(message, field.name).CopyFrom(value)
            elif field.type == FieldDescriptor.TYPE_ENUM:
                numbers = [v.number for v in field.enum_type.values] + [99]
                values = (
                    draw(st.lists(st.sampled_from(numbers), max_size=3))
                    if field.is_repeated
                    else [draw(st.sampled_from(numbers))]
                )
                if field.is_repeated:
                    getattr(message, field.name).extend(values)
                else:
                    setattr(message, field.name, values[0])
            elif field.type in SCALARS:
                if field.is_repeated:
                    getattr(message, field.name).extend(
                        draw(st.lists(SCALARS[field.type], max_size=4))
                    )
                else:
                    setattr(message, field.name, draw(SCALARS[field.type]))
        return message

    return build()


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """Sandbox + gateway on their own event loop thread; hypothesis drives a blocking client."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        async with Sandbox(SandboxConfig(market=False)) as sandbox:
            sandbox.faults.update({"rate_limit_per_s": 0})
            async with Gateway(gateway_config(sandbox)) as gateway:
                holder["target"] = f"127.0.0.1:{gateway.port}"
                holder["sandbox"] = sandbox
                holder["stop"] = asyncio.Event()
                ready.set()
                await holder["stop"].wait()
                sandbox.exchange.check_invariants()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(20)
    yield holder["target"]
    loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(20)


@pytest.mark.parametrize("service,method", METHODS, ids=[m.name for _, m in METHODS])
def test_arbitrary_requests_get_deliberate_statuses(target: str, service: str, method: Any) -> None:
    from google.protobuf import message_factory

    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{service}/{method.name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(message_of(method.input_type, request_cls))
        def run(request: Message) -> None:
            try:
                call(request, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
            assert code in DELIBERATE, f"{method.name}({request}) -> {code}"

        run()
