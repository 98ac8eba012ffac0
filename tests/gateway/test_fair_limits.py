"""Fair limits: the gateway never exceeds ALP's limit in any sliding second, reads cannot starve
trading, a 429 queue resumes paced, and one caller's quota is its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc, common_pb2, trading_pb2, trading_pb2_grpc

from gateway.app import Gateway
from gateway.config import CallerSpec
from gateway.core.callers import token_digest
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of


def busiest(sandbox: Sandbox, prefix: str, window: float = 1.0) -> int:
    """Most requests under `prefix` the sandbox received within any `window` seconds."""
    times = sorted(t for t, _, path in sandbox.stats.request_log if path.startswith(prefix))
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.slow
@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 10.0}])
async def test_concurrent_private_calls_draw_no_429_from_a_sliding_window_alp(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    sandbox.faults.update({"rate_limit_per_s": 10})
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await stub.ListBalances(account_pb2.ListBalancesRequest())  # token held
    await asyncio.gather(
        *(stub.ListBalances(account_pb2.ListBalancesRequest(), timeout=20) for _ in range(30))
    )
    assert sandbox.stats.rate_limited == 0
    assert busiest(sandbox, "/api/v3/accounts") <= 10


@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 2.0}])
async def test_reads_cannot_starve_an_order(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    reads = account_pb2_grpc.AccountServiceStub(channel)
    await reads.ListBalances(account_pb2.ListBalancesRequest())

    async def read() -> Any:
        return await reads.ListOrders(account_pb2.ListOrdersRequest(), timeout=10)

    readers = [asyncio.create_task(read()) for _ in range(8)]
    await asyncio.sleep(0)  # the readers queue first
    reply = await trading_pb2_grpc.TradingServiceStub(channel).PlaceOrder(
        trading_pb2.PlaceOrderRequest(
            pair="BTC_USDT",
            side=common_pb2.ORDER_SIDE_BUY,
            limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price="20000"),
        ),
        timeout=3,
    )
    assert reply.order_id > 0
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


@pytest.mark.slow
@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 2.0}])
async def test_after_a_429_the_queue_resumes_paced(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await stub.ListBalances(account_pb2.ListBalancesRequest())
    sandbox.faults.update(
        {"error_rate": 1.0, "error_status": 429, "error_path_prefix": "/accounts"}
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.ListBalances(account_pb2.ListBalancesRequest())  # the 429: pause 1 s
    sandbox.faults.update({"error_rate": 0.0})
    started = len(sandbox.stats.request_log)
    results = await asyncio.gather(
        *(stub.ListBalances(account_pb2.ListBalancesRequest(), timeout=20) for _ in range(8)),
        return_exceptions=True,
    )
    assert all(not isinstance(r, BaseException) for r in results)
    after = list(sandbox.stats.request_log)[started:]
    assert len(after) == 8
    times = sorted(t for t, _, _ in after)
    for i in range(len(times) - 2):
        assert times[i + 2] - times[i] >= 1.0  # never 3 within a second: no release all at once


QUOTA_CALLERS = {
    "greedy": CallerSpec(
        "greedy", frozenset({"market"}), frozenset(), token_digest("greedy-token"), "", 2.0
    ),
    "polite": CallerSpec(
        "polite", frozenset({"market"}), frozenset(), token_digest("polite-token")
    ),
}


@pytest.fixture
async def quota_channel(sandbox: Sandbox) -> AsyncIterator[grpc.aio.Channel]:
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(QUOTA_CALLERS)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            yield channel


async def test_a_callers_quota_is_its_own(quota_channel: grpc.aio.Channel) -> None:
    from alp.v3 import market_data_pb2, market_data_pb2_grpc

    stub = market_data_pb2_grpc.MarketDataServiceStub(quota_channel)
    greedy = (("authorization", "Bearer greedy-token"),)
    polite = (("authorization", "Bearer polite-token"),)
    for _ in range(2):
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest(), metadata=greedy)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest(), metadata=greedy)
    details = details_of(info.value)
    assert details.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.error_info is not None
    assert details.error_info.metadata["bucket"] == "caller:greedy"
    assert details.retry_info is not None
    for _ in range(5):  # the other caller is not affected
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest(), metadata=polite)
