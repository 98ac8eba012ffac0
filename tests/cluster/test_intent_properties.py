"""Property: over any interleaving of retries across two fleet members (concurrent or not), faults
before and after ALP applied the order, and member restarts, each client_order_id yields at most
one order, a caller told OK holds that order, and an intent only ever answered "not placed" has
no order. Keys live in Redis, so unlike one process's memory they outlive a member's restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal

import grpc
import pytest
from alp.v3 import trading_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.cluster.redis_conn import connect
from gateway.sandbox import Sandbox, SandboxConfig
from tests.cluster.conftest import RedisServer
from tests.cluster.test_intents import order
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of
from tests.gateway.test_order_properties import CLEAR, DEADLINE_S, DEFINITE, FAULTS, HELD_S

pytestmark = pytest.mark.slow

Send = tuple[int, int]  # (member, intent)
Wave = tuple[str, tuple[Send, ...]]  # (fault, concurrent sends) | ("restart", ((member, 0),))
WAVES = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(sorted(FAULTS)),
            st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=3).map(
                tuple
            ),
        ),
        st.tuples(st.just("restart"), st.tuples(st.tuples(st.integers(0, 1), st.just(0)))),
    ),
    min_size=1,
    max_size=4,
)


@dataclass
class Intent:
    price: str
    answers: list[str] = field(default_factory=list)
    ok_ids: set[int] = field(default_factory=set)


async def place(gateway: Gateway, intent: Intent, cid: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = trading_pb2_grpc.TradingServiceStub(channel)
        try:
            reply = await stub.PlaceOrder(order(intent.price, cid), timeout=DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            info = details_of(exc).error_info
            reason = info.reason if info is not None else exc.code().name
            assert reason in ("ORDER_NOT_PLACED", "ORDER_OUTCOME_UNKNOWN") or (
                exc.code() in DEFINITE
            ), (exc.code(), exc.details())
            intent.answers.append(reason)
        else:
            intent.answers.append(f"OK:{reply.order_id}")
            intent.ok_ids.add(reply.order_id)


def held(sandbox: Sandbox, intent: Intent) -> list[int]:
    price = Decimal(intent.price)
    return [o.id for o in sandbox.exchange.orders(1001, 10_000) if o.price == price]


async def run(waves: list[Wave], redis_url: str) -> None:
    client = connect(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    async with Sandbox(SandboxConfig(market=False)) as sandbox:
        config = gateway_config(sandbox, trading__settle_s=1.0, cluster__redis_url=redis_url)
        intents = {n: Intent(f"{21000 + 10 * n}") for n in range(2)}
        members = [Gateway(config), Gateway(config)]
        for member in members:
            await member.start()
        try:
            for fault, sends in waves:
                if fault == "restart":
                    index = sends[0][0]
                    await members[index].stop(grace_s=0.5)
                    members[index] = Gateway(config)
                    await members[index].start()
                    continue
                sandbox.faults.update({**CLEAR, **FAULTS[fault]})
                await asyncio.gather(
                    *(place(members[m], intents[i], f"fleet-c{i}") for m, i in sends)
                )
                sandbox.faults.update(CLEAR)
        finally:
            for member in members:
                await member.stop(grace_s=0.5)
        await asyncio.sleep(HELD_S + 0.5)  # a fault's duration, not a race: held requests land
        for key, intent in intents.items():
            orders = held(sandbox, intent)
            assert len(orders) <= 1, (key, intent, orders)  # never doubled, whichever member
            assert intent.ok_ids <= set(orders), (key, intent, orders)  # OK means it exists
            if intent.answers and set(intent.answers) == {"ORDER_NOT_PLACED"}:
                assert orders == [], (key, intent, orders)
        sandbox.exchange.check_invariants()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(WAVES)
def test_one_order_per_client_order_id_across_members(
    redis_server: RedisServer, waves: list[Wave]
) -> None:
    if not redis_server.running:
        redis_server.start()
    asyncio.run(run(waves, redis_server.url))
