"""Upstream economy: the client-side rate limiter (measured at the sandbox) and request coalescing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc, market_data_pb2, market_data_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox
from tests.gateway.status_details import details_of


@pytest.mark.slow  # 15 calls at 5/s
@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 5.0}])
async def test_private_rate_never_exceeded_at_the_sandbox(
    channel: grpc.aio.Channel,
    sandbox: Sandbox,
    gateway: Gateway,
    gateway_overrides: dict[str, object],
) -> None:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await stub.ListBalances(account_pb2.ListBalancesRequest())  # token, warm
    assert gateway.upstream is not None
    limiter = gateway.upstream.client.limiter
    waits = limiter.waits
    started = time.monotonic()
    await asyncio.gather(
        *(stub.ListBalances(account_pb2.ListBalancesRequest(), timeout=10) for _ in range(15))
    )
    arrivals = [
        t for t, _, path in sandbox.stats.request_log if t >= started and path.endswith("/balances")
    ]
    assert len(arrivals) == 15
    assert limiter.waits - waits >= 5  # 15 at once at 5/s: the limiter held at least 5 back
    for i in range(len(arrivals)):  # no one-second window holds more than burst + rate
        window = [t for t in arrivals if arrivals[i] <= t < arrivals[i] + 1.0]
        assert len(window) <= 10


@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 1.0}])
async def test_queue_beyond_deadline_is_resource_exhausted(
    channel: grpc.aio.Channel, gateway_overrides: dict[str, object]
) -> None:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await stub.ListBalances(account_pb2.ListBalancesRequest())
    results = await asyncio.gather(
        *(stub.ListBalances(account_pb2.ListBalancesRequest(), timeout=0.5) for _ in range(5)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert errors and all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in errors)
    details = details_of(errors[0])
    assert details.retry_info is not None
    assert details.error_info is not None and details.error_info.reason == "RATE_LIMITED"


async def test_upstream_429_pauses_the_pool(channel: grpc.aio.Channel, sandbox: Sandbox) -> None:
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    sandbox.faults.update({"error_rate": 1.0, "error_status": 429})
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest())
    sandbox.faults.update({"error_rate": 0.0})
    before = sandbox.stats.rest_requests[("GET", "/api/v3/time")]
    with pytest.raises(grpc.aio.AioRpcError) as info:  # paused for Retry-After (1 s) > deadline
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest(), timeout=0.3)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sandbox.stats.rest_requests[("GET", "/api/v3/time")] == before  # nothing was sent
    reply = await stub.GetServerTime(market_data_pb2.GetServerTimeRequest(), timeout=3)
    assert reply.server_time.seconds > 0


@pytest.mark.parametrize("gateway_overrides", [{"upstream__public_cache_ttl_s": 0.5}])
async def test_identical_public_calls_coalesce(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, object]
) -> None:
    sandbox.faults.update({"delay_s": 0.2})
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    request = market_data_pb2.ListTickersRequest(pair="BTC_USDT")
    replies = await asyncio.gather(*(stub.ListTickers(request) for _ in range(50)))
    assert len({r.SerializeToString() for r in replies}) == 1
    assert sandbox.stats.rest_requests[("GET", "/api/v3/ticker")] == 1
    await stub.ListTickers(request)  # inside the TTL: still one upstream call
    assert sandbox.stats.rest_requests[("GET", "/api/v3/ticker")] == 1

    async def expired() -> None:  # asked again and again: one more upstream call once the TTL ends
        while sandbox.stats.rest_requests[("GET", "/api/v3/ticker")] == 1:
            await stub.ListTickers(request)
            await asyncio.sleep(0.02)

    await asyncio.wait_for(expired(), 5)
    assert sandbox.stats.rest_requests[("GET", "/api/v3/ticker")] == 2


# -- retries take a rate-limit slot each (they took none: 3 sends a second at private_rps 2) --------------------------------
def max_sends_in_window(sandbox: Sandbox, path: str, span: float) -> int:
    times = [t for t, _, p in sandbox.stats.request_log if p == path]
    return max((sum(1 for u in times if t <= u < t + span) for t in times), default=0)


@pytest.mark.slow  # two rate windows
@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 2.0}])
async def test_retries_stay_inside_the_private_rate_window(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    """README: never more than private_rps sends in any second. A read answered 500 is retried
    (3 attempts) after one limiter slot: 2 reads put 6 sends on the wire within ~0.1 s."""
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await asyncio.sleep(1.2)  # the window is empty (start-up health check)
    sandbox.faults.update(
        {"error_rate": 1.0, "error_status": 500, "error_path_prefix": "/accounts/order"}
    )
    for _ in range(2):
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.ListOrders(account_pb2.ListOrdersRequest(), timeout=3.0)
    assert max_sends_in_window(sandbox, "/api/v3/accounts/order", 1.0) <= 2
