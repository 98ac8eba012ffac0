"""An order is never doubled and never lost, against the strict sandbox's fault injection.

Every scenario checks the same invariant: each caller's answer matches what ALP holds.
- OK                      -> exactly that order exists
- ORDER_NOT_PLACED, or a definite refusal (RESOURCE_EXHAUSTED, INVALID_ARGUMENT...) -> none exists
- ORDER_OUTCOME_UNKNOWN   -> allowed (the caller was told to look), at most one exists
Orders are told apart by price: each intent in a scenario has its own limit price.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from alp.v3 import common_pb2, trading_pb2, trading_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of
from tests.gateway.test_streams import eventually

BUY = common_pb2.ORDER_SIDE_BUY
DEFINITE = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}


def order(
    price: str, cid: str | None = None, amount: str = "0.01"
) -> trading_pb2.PlaceOrderRequest:
    kwargs: dict[str, Any] = {"client_order_id": cid} if cid else {}
    return trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=BUY,
        limit=trading_pb2.LimitOrder(base_amount=amount, limit_price=price),
        **kwargs,
    )


class Outcome:
    def __init__(self, reply: Any = None, error: grpc.aio.AioRpcError | None = None) -> None:
        self.reply = reply
        self.error = error

    @property
    def reason(self) -> str:
        if self.error is None:
            return "OK"
        info = details_of(self.error).error_info
        return info.reason if info is not None else self.error.code().name

    def __repr__(self) -> str:
        return f"Outcome({self.reason}, {self.error.details() if self.error else self.reply})"


async def attempt(stub: Any, request: Any, within: float) -> Outcome:
    try:
        return Outcome(reply=await stub.PlaceOrder(request, timeout=within))
    except grpc.aio.AioRpcError as exc:
        return Outcome(error=exc)


def upstream_orders(sandbox: Sandbox, price: str) -> list[int]:
    return [o.id for o in sandbox.exchange.orders(1001, 10_000) if o.price == Decimal(price)]


def assert_truthful(sandbox: Sandbox, price: str, outcome: Outcome) -> None:
    held = upstream_orders(sandbox, price)
    if outcome.error is None:
        assert held == [outcome.reply.order_id], (price, held, outcome)
    elif outcome.reason == "ORDER_OUTCOME_UNKNOWN":
        assert outcome.error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert len(held) <= 1, (price, held)
    elif outcome.reason == "ORDER_NOT_PLACED" or outcome.error.code() in DEFINITE:
        assert held == [], (price, held, outcome)
    else:
        pytest.fail(f"an answer a caller cannot act on: {outcome}")


async def warm(stub: Any) -> None:
    await stub.PlaceOrder(order("15000"))  # pairs cached, token held, mark known


@pytest.mark.parametrize(
    "faults,expect",
    [
        pytest.param({"delay_after_s": 4.0}, {"OK"}, marks=pytest.mark.slow),  # answer late
        ({"error_rate": 1.0, "error_status": 500, "error_after_apply": True}, {"OK"}),
        ({"error_rate": 1.0, "error_status": 503, "error_after_apply": True}, {"OK"}),
        ({"reset_after_apply": True}, {"OK"}),
        ({"error_rate": 1.0, "error_status": 503}, {"ORDER_NOT_PLACED"}),  # refused before
        ({"error_rate": 1.0, "error_status": 502}, {"ORDER_NOT_PLACED"}),
    ],
)
async def test_fault_matrix_single_order(
    channel: grpc.aio.Channel, sandbox: Sandbox, faults: dict[str, Any], expect: set[str]
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update(
        {**faults, "delay_path_prefix": "/trading", "error_path_prefix": "/trading"}
    )
    outcome = await attempt(stub, order("20001", cid="m-1"), within=5.0)
    sandbox.faults.update(
        {
            "error_rate": 0.0,
            "delay_after_s": 0.0,
            "error_after_apply": False,
            "reset_after_apply": False,
        }
    )
    assert outcome.reason in expect, outcome
    assert_truthful(sandbox, "20001", outcome)
    if outcome.error is None:
        assert outcome.reply.reconciled and outcome.reply.client_order_id == "m-1"
    # a retry with the same key never places a second order
    again = await attempt(stub, order("20001", cid="m-1"), within=5.0)
    assert_truthful(sandbox, "20001", again)
    if outcome.error is None:
        assert again.reply.order_id == outcome.reply.order_id
    else:
        assert again.error is None  # verified absent: the retry really placed it, once
    assert len(upstream_orders(sandbox, "20001")) == 1


@pytest.mark.slow
async def test_late_apply_is_unknown_then_found_by_the_retry(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    """ALP holds the request longer than the caller waits, then applies it: the caller is not
    told "failed"; the retry with the same key finds the order instead of placing another."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update({"delay_s": 3.5, "delay_path_prefix": "/trading"})
    first = await attempt(stub, order("20002", cid="late-1"), within=3.0)
    assert first.reason == "ORDER_OUTCOME_UNKNOWN", first  # not there yet, not provably absent
    assert_truthful(sandbox, "20002", first)
    sandbox.faults.update({"delay_s": 0.0})
    await eventually(lambda: len(upstream_orders(sandbox, "20002")) == 1)  # the held one lands
    retry = await attempt(stub, order("20002", cid="late-1"), within=5.0)
    assert retry.error is None and retry.reply.reconciled
    assert upstream_orders(sandbox, "20002") == [retry.reply.order_id]
    assert sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] == 2  # warm + one


async def test_an_order_applied_just_before_the_deadline_is_found(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update({"delay_s": 2.5, "delay_path_prefix": "/trading"})
    outcome = await attempt(stub, order("20009", cid="late-2"), within=3.0)
    assert outcome.error is None and outcome.reply.reconciled  # the last look before the deadline
    assert_truthful(sandbox, "20009", outcome)


async def test_concurrent_duplicates_wait_for_the_first(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update({"delay_after_s": 0.5, "delay_path_prefix": "/trading"})
    outcomes = await asyncio.gather(
        *(attempt(stub, order("20003", cid="dup-1"), within=5.0) for _ in range(5))
    )
    assert all(o.error is None for o in outcomes), outcomes
    assert {o.reply.order_id for o in outcomes} == set(upstream_orders(sandbox, "20003"))
    assert len(upstream_orders(sandbox, "20003")) == 1


async def test_same_key_other_parameters_is_refused(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    first = await attempt(stub, order("20004", cid="k-1"), within=5.0)
    assert first.error is None
    other = await attempt(stub, order("20005", cid="k-1"), within=5.0)
    assert other.error is not None and other.error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(other.error).fields == ["client_order_id"]
    assert upstream_orders(sandbox, "20005") == []


async def test_a_request_refused_by_validation_stores_nothing(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    bad = await attempt(stub, order("20006.123", cid="v-1"), within=5.0)  # precision 2
    assert bad.error is not None and bad.error.code() is grpc.StatusCode.INVALID_ARGUMENT
    good = await attempt(stub, order("20006", cid="v-1"), within=5.0)
    assert good.error is None and upstream_orders(sandbox, "20006") == [good.reply.order_id]


@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 2.0}])
@pytest.mark.slow
async def test_reconciliation_under_rate_pressure_never_says_rate_limited_for_real_orders(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    """6 callers, a 3 s deadline, ALP answering 2.5 s late, another caller reading hard."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update(
        {"delay_after_s": 2.5, "delay_path_prefix": "/trading", "rate_limit_per_s": 2}
    )
    from alp.v3 import account_pb2, account_pb2_grpc

    reader = account_pb2_grpc.AccountServiceStub(channel)

    async def read_hard() -> None:
        for _ in range(8):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await reader.ListOrders(account_pb2.ListOrdersRequest(), timeout=3.0)

    prices = [f"2010{i}" for i in range(6)]
    results = await asyncio.gather(
        read_hard(),
        *(attempt(stub, order(p, cid=f"rp-{p}"), within=3.0) for p in prices),
    )
    outcomes: list[Outcome] = list(results[1:])
    for price, outcome in zip(prices, outcomes, strict=True):
        assert_truthful(sandbox, price, outcome)
        if upstream_orders(sandbox, price):  # it exists: the caller must not hear "failed"
            assert outcome.reason in ("OK", "ORDER_OUTCOME_UNKNOWN"), outcome
    assert sandbox.stats.rate_limited == 0  # the gateway kept within ALP's window


@pytest.mark.slow
async def test_drain_answers_cut_orders_as_unknown_and_audits_them(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    gateway = Gateway(gateway_config(sandbox, audit__path=str(path)))
    await gateway.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        stub = trading_pb2_grpc.TradingServiceStub(channel)
        await warm(stub)
        sandbox.faults.update({"delay_after_s": 5.0, "delay_path_prefix": "/trading"})
        prices = [f"2020{i}" for i in range(5)]
        calls = [
            asyncio.create_task(attempt(stub, order(p, cid=f"d-{p}"), within=20.0)) for p in prices
        ]
        await eventually(
            lambda: sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] >= 6
        )
        await gateway.stop(grace_s=1.0)
        outcomes = await asyncio.gather(*calls)
    for price, outcome in zip(prices, outcomes, strict=True):
        assert outcome.reason == "ORDER_OUTCOME_UNKNOWN", outcome  # never a bare UNAVAILABLE
        assert_truthful(sandbox, price, outcome)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    intents = {x["request_id"] for x in lines if x["phase"] == "intent"}
    finished = {x["request_id"] for x in lines if x["phase"] == "outcome"}
    assert intents == finished and len(intents) == 6
    assert sum(1 for x in lines if x.get("status") == "FAILED_PRECONDITION") == 5


async def test_new_orders_are_refused_while_draining(sandbox: Sandbox) -> None:
    gateway = Gateway(gateway_config(sandbox))
    await gateway.start()
    assert gateway.desk is not None
    gateway.desk.begin_drain()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        outcome = await attempt(trading_pb2_grpc.TradingServiceStub(channel), order("20300"), 5.0)
    await gateway.stop(grace_s=0.5)
    assert outcome.error is not None and outcome.error.code() is grpc.StatusCode.UNAVAILABLE
    assert "draining" in (outcome.error.details() or "")
    assert sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] == 0


async def test_oversize_values_never_bloat_the_audit(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with Gateway(gateway_config(sandbox, audit__path=str(path))) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = trading_pb2_grpc.TradingServiceStub(channel)
            huge = order("20400", cid="x" * 3_900_000)
            outcome = await attempt(stub, huge, 5.0)
    assert outcome.error is not None and outcome.error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert path.stat().st_size < 2000
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["phase"] == "refused" and line["fields"] == ["client_order_id"]
