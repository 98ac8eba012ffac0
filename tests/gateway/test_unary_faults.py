"""Unary gateway under upstream faults: tokens, retries only where safe, reconciliation, deadlines."""

from __future__ import annotations

import asyncio
import os
import stat
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from alp.v3 import (
    account_pb2,
    account_pb2_grpc,
    common_pb2,
    market_data_pb2,
    market_data_pb2_grpc,
    trading_pb2,
    trading_pb2_grpc,
)

from gateway.app import Gateway
from gateway.config import AccountCredentials
from gateway.core.token_policy import Secret
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of
from tests.gateway.test_streams import eventually

BUY = common_pb2.ORDER_SIDE_BUY


def order(amount: str = "0.01", price: str = "20000", cid: str | None = None) -> object:
    kwargs = {"client_order_id": cid} if cid else {}
    return trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=BUY,
        limit=trading_pb2.LimitOrder(base_amount=amount, limit_price=price),
        **kwargs,
    )


async def test_thousand_concurrent_first_calls_make_one_auth(
    gateway: Gateway, sandbox: Sandbox
) -> None:
    assert gateway.upstream is not None
    tokens = gateway.upstream.account("demo").tokens
    results = await asyncio.gather(*(tokens.token() for _ in range(1000)))
    assert len(set(results)) == 1
    assert sandbox.stats.auth_calls == 1
    assert tokens.refreshes == 1
    assert results[0] not in repr(tokens)


async def test_concurrent_rpcs_share_one_token(channel: grpc.aio.Channel, sandbox: Sandbox) -> None:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await asyncio.gather(
        *(stub.ListBalances(account_pb2.ListBalancesRequest()) for _ in range(200))
    )
    assert sandbox.stats.auth_calls == 1


@pytest.mark.parametrize("gateway_overrides", [{"token__refresh_margin_s": 0.5}])
async def test_token_refreshes_ahead_of_expiry(
    channel: grpc.aio.Channel,
    sandbox: Sandbox,
    gateway: Gateway,
    gateway_overrides: dict[str, object],
) -> None:
    sandbox.faults.update({"token_lifetime_s": 2.0})
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await stub.ListBalances(account_pb2.ListBalancesRequest())
    assert sandbox.stats.auth_calls == 1
    assert gateway.upstream is not None
    tokens = gateway.upstream.account("demo").tokens
    # until the manager itself calls the 2 s token due (its 0.5 s margin), not a guessed sleep
    await eventually(lambda: tokens.current() is None)
    await stub.ListBalances(account_pb2.ListBalancesRequest())
    assert sandbox.stats.auth_calls == 2
    assert gateway.upstream.client.stats.reauth_on_401 == 0  # renewed ahead, never refused


async def test_401_reauthenticates_once_and_retries(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await stub.ListBalances(account_pb2.ListBalancesRequest())
    sandbox.revoke_tokens()  # the held token still looks valid to the gateway; ALP refuses it
    reply = await stub.ListBalances(account_pb2.ListBalancesRequest())
    assert reply.balances
    assert sandbox.stats.auth_calls == 2
    assert gateway.upstream is not None and gateway.upstream.client.stats.reauth_on_401 == 1


async def test_wrong_secret_is_unauthenticated_with_error_info(sandbox: Sandbox) -> None:
    config = gateway_config(sandbox).with_accounts(
        {"demo": AccountCredentials("demo", "demo-key", Secret("not-the-secret"))}
    )
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = account_pb2_grpc.AccountServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListBalances(account_pb2.ListBalancesRequest())
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.UNAUTHENTICATED
    assert details.error_info is not None and details.error_info.reason == "INVALID_SECRET"
    assert "not-the-secret" not in details.message


async def test_token_cache_survives_restart_with_mode_0600(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config = gateway_config(sandbox, token__cache_dir=str(tmp_path / "tokens"))
    for _ in range(2):
        async with Gateway(config) as gateway:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                stub = account_pb2_grpc.AccountServiceStub(channel)
                await stub.ListBalances(account_pb2.ListBalancesRequest())
    assert sandbox.stats.auth_calls == 1
    files = list((tmp_path / "tokens").iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    assert "demo-secret" not in files[0].read_text()


async def test_idempotent_get_retries_then_reports_unavailable(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    sandbox.faults.update({"error_rate": 1.0, "error_status": 503})
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListPairs(market_data_pb2.ListPairsRequest())
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.retry_info is not None and details.retry_info.retry_delay.seconds == 1
    assert details.error_info is not None and details.error_info.reason == "3003"
    assert sandbox.stats.rest_requests[("GET", "/api/v3/pairs")] == 3  # retry.attempts


async def test_get_recovers_when_a_retry_succeeds(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    sandbox.faults.update({"error_rate": 0.5, "error_status": 502, "seed": 3})
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    for _ in range(10):
        reply = await stub.GetServerTime(market_data_pb2.GetServerTimeRequest())
        assert reply.server_time.seconds > 0
    assert sandbox.stats.injected_errors > 0


async def test_place_order_is_never_retried_blindly(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    await trading.PlaceOrder(order())  # warm: pairs cached, token held
    sandbox.faults.update({"error_rate": 1.0, "error_status": 503, "error_path_prefix": "/trading"})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await trading.PlaceOrder(order())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] == 2


async def test_rate_limited_upstream_is_resource_exhausted_with_retry_info(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    sandbox.faults.update({"error_rate": 1.0, "error_status": 429})
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    before = sandbox.stats.rest_requests[("GET", "/api/v3/time")]  # start-up health check
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest())
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.retry_info is not None
    assert sandbox.stats.rest_requests[("GET", "/api/v3/time")] == before + 1  # no retry


@pytest.mark.parametrize("gateway_overrides", [{"upstream__deadline_margin_s": 0.6}])
async def test_slow_upstream_is_deadline_exceeded(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, object]
) -> None:
    sandbox.faults.update({"delay_s": 1.2})
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetServerTime(market_data_pb2.GetServerTimeRequest(), timeout=1.2)
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # The gateway's own answer (its ErrorInfo), given 0.6 s before the caller's deadline: it kept
    # to the deadline instead of waiting for ALP; a client-side timeout carries no details.
    assert details.error_info is not None and details.error_info.reason == "UPSTREAM_TIMEOUT"


@pytest.mark.slow  # ALP answers after 5 s; the sandbox holds the request that long
async def test_ambiguous_place_order_is_reconciled(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    await trading.PlaceOrder(order())  # warm: pairs cached, token held
    # ALP accepts the order but answers too late: the gateway must find it, not report a failure.
    sandbox.faults.update({"delay_after_s": 5.0, "delay_path_prefix": "/trading"})
    reply = await trading.PlaceOrder(order(cid="reconcile-me"), timeout=3.0)
    assert reply.reconciled and reply.client_order_id == "reconcile-me"
    orders = [o for o in sandbox.exchange.orders(1001) if o.client_order_id == "reconcile-me"]
    assert len(orders) == 1 and orders[0].id == reply.order_id
    assert sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] == 2


async def test_ambiguous_failure_without_order_reports_error(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    await trading.PlaceOrder(order())
    sandbox.faults.update({"error_rate": 1.0, "error_status": 502, "error_path_prefix": "/trading"})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await trading.PlaceOrder(order(cid="never-made"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sandbox.stats.rest_requests[("GET", "/api/v3/accounts/order")] == 2  # two lookups
    assert not [o for o in sandbox.exchange.orders(1001) if o.client_order_id == "never-made"]


async def test_unreachable_upstream_is_unavailable(sandbox: Sandbox) -> None:
    config = gateway_config(
        sandbox, upstream__rest_url="http://127.0.0.1:9", upstream__retry_attempts=2
    )
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListPairs(market_data_pb2.ListPairsRequest())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_exact_decimals_end_to_end(channel: grpc.aio.Channel) -> None:
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    await trading.PlaceOrder(order("0.000523", "12345.67"))
    book = await market_data_pb2_grpc.MarketDataServiceStub(channel).GetOrderBook(
        market_data_pb2.GetOrderBookRequest(pair="BTC_USDT")
    )
    level = next(lv for lv in book.buy if Decimal(lv.price) == Decimal("12345.67"))
    assert level.amount == "0.000523" and "e" not in level.amount.lower()
