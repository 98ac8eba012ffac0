"""Property: over any interleaving of place, retry, fault and gateway restart, each intent
(client_order_id) yields at most one order, and no caller is told "failed" for an order that exists.

Hypothesis draws the sequence; each example runs against a fresh sandbox and gateway over real
sockets. Keys live in memory (the fleet issue moves them to Redis), so a restart starts a new
generation of keys: intents are (client_order_id, generation), each with its own limit price.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
import pytest
from alp.v3 import common_pb2, trading_pb2, trading_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.sandbox import Sandbox, SandboxConfig
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of

pytestmark = pytest.mark.slow

DEADLINE_S = 2.0
HELD_S = 1.5  # ALP holds a request at most this long (within trading.settle_s of giving up)
FAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "late_answer": {"delay_after_s": HELD_S},
    "held_then_applied": {"delay_s": HELD_S},
    "500_after_apply": {"error_rate": 1.0, "error_status": 500, "error_after_apply": True},
    "503_after_apply": {"error_rate": 1.0, "error_status": 503, "error_after_apply": True},
    "reset_after_apply": {"reset_after_apply": True},
    "503_refused": {"error_rate": 1.0, "error_status": 503},
}
CLEAR = {
    "delay_s": 0.0,
    "delay_after_s": 0.0,
    "error_rate": 0.0,
    "error_after_apply": False,
    "reset_after_apply": False,
    "delay_path_prefix": "/trading",
    "error_path_prefix": "/trading",
}
DEFINITE = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT}

Step = tuple[str, int, str]  # ("send", intent, fault) | ("restart", 0, "")
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), st.sampled_from(sorted(FAULTS))),
        st.tuples(st.just("restart"), st.just(0), st.just("")),
    ),
    min_size=1,
    max_size=5,
)


@dataclass
class Intent:
    price: str
    answers: list[str] = field(default_factory=list)  # "OK:<id>", reasons
    ok_ids: set[int] = field(default_factory=set)


def request(intent: Intent, cid: str) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        client_order_id=cid,
        limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price=intent.price),
    )


async def run(steps: list[Step]) -> None:
    async with Sandbox(SandboxConfig(market=False)) as sandbox:
        config = gateway_config(sandbox, trading__settle_s=1.0)
        generation = 0
        intents: dict[tuple[int, int], Intent] = {}
        gateway = Gateway(config)
        await gateway.start()
        try:
            for kind, index, fault in steps:
                if kind == "restart":
                    await gateway.stop(grace_s=0.5)
                    gateway = Gateway(config)
                    await gateway.start()
                    generation += 1
                    continue
                key = (index, generation)
                intent = intents.setdefault(key, Intent(f"{20000 + 10 * len(intents)}"))
                sandbox.faults.update({**CLEAR, **FAULTS[fault]})
                async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                    stub = trading_pb2_grpc.TradingServiceStub(channel)
                    try:
                        reply = await stub.PlaceOrder(
                            request(intent, f"c{index}-g{generation}"), timeout=DEADLINE_S
                        )
                    except grpc.aio.AioRpcError as exc:
                        info = details_of(exc).error_info
                        reason = info.reason if info is not None else exc.code().name
                        assert reason in ("ORDER_NOT_PLACED", "ORDER_OUTCOME_UNKNOWN") or (
                            exc.code() in DEFINITE
                        ), (fault, exc.code(), exc.details())
                        if reason == "ORDER_NOT_PLACED":  # verified absent: at answer time
                            assert held(sandbox, intent) == [], (fault, intent)
                        intent.answers.append(reason)
                    else:
                        intent.answers.append(f"OK:{reply.order_id}")
                        intent.ok_ids.add(reply.order_id)
                        assert held(sandbox, intent) == [reply.order_id], (fault, intent)
                sandbox.faults.update(CLEAR)
        finally:
            await gateway.stop(grace_s=0.5)
        await asyncio.sleep(HELD_S + 0.5)  # a fault's duration, not a race: held requests land
        for key, intent in intents.items():
            orders = held(sandbox, intent)
            assert len(orders) <= 1, (key, intent, orders)  # never doubled
            if intent.ok_ids:
                assert intent.ok_ids == set(orders), (key, intent, orders)
            if intent.answers and intent.answers[-1] == "ORDER_NOT_PLACED":
                assert orders == [], (key, intent, orders)  # "not placed" stayed true
        sandbox.exchange.check_invariants()


def held(sandbox: Sandbox, intent: Intent) -> list[int]:
    price = Decimal(intent.price)
    return [o.id for o in sandbox.exchange.orders(1001, 10_000) if o.price == price]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_one_order_per_intent_and_no_false_failure(steps: list[Step]) -> None:
    asyncio.run(run(steps))
