"""Health an operator can use: plaintext /healthz and /readyz, NOT_SERVING until ALP answered once,
per-service status when one account's key is refused, 429 storms are not outages, Watch works."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.app import Gateway
from gateway.config import CallerSpec
from gateway.sandbox import Sandbox
from tests.gateway.certs import make_pki
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MARKET = ("alp.v3.MarketDataService", "alp.v3.StreamService")
ACCOUNTS = ("alp.v3.AccountService", "alp.v3.TradingService")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def http_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        return r.status, await r.json()


async def eventually(condition: Callable[[], Any], within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


class Probe:
    """grpc.health.v1 over a real channel, plus the HTTP endpoint."""

    def __init__(self, channel: grpc.aio.Channel, http_port: int) -> None:
        self.stub = health_pb2_grpc.HealthStub(channel)
        self.http_port = http_port

    async def status(self, service: str = "") -> int:
        reply = await self.stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)

    async def all(self) -> dict[str, int]:
        names = ("", *MARKET, *ACCOUNTS, "alp.v3.GatewayService")
        return {name: await self.status(name) for name in names}


@pytest.fixture
async def watched(sandbox: Sandbox) -> AsyncIterator[tuple[Gateway, Probe]]:
    """A gateway checking ALP every 0.1 s, with its HTTP health port and a health stub."""
    port = free_port()
    config = gateway_config(
        sandbox,
        health__interval_s=0.1,
        health__http_port=port,
        upstream__retry_attempts=1,
        metrics__enabled=True,
        metrics__port=0,
    )
    async with Gateway(config) as gateway:
        assert gateway.health_http_port == port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            yield gateway, Probe(channel, port)


async def test_not_ready_before_the_first_check_then_ready(sandbox: Sandbox) -> None:
    sandbox.faults.update({"delay_s": 1.0, "delay_path_prefix": "/time"})  # the check is slow
    port = free_port()
    gateway = Gateway(gateway_config(sandbox, health__http_port=port))
    starting = asyncio.ensure_future(gateway.start())
    try:

        async def http_up() -> bool:
            try:
                return (await http_get(port, "/healthz"))[0] == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(http_up)
        status, body = await http_get(port, "/readyz")
        assert (status, body) == (
            503,
            {"status": "NOT_SERVING", "reason": "first upstream check pending"},
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            early = await Probe(channel, port).all()
        assert early.pop("alp.v3.GatewayService") == SERVING  # GetStatus needs no ALP
        assert set(early.values()) == {NOT_SERVING}
        assert not starting.done()  # start-up waits for the first verdict
        await asyncio.wait_for(starting, 10)
        assert await http_get(port, "/readyz") == (200, {"status": "SERVING", "reason": "serving"})
        assert await http_get(port, "/healthz") == (200, {"status": "alive"})
    finally:
        await asyncio.wait({starting})
        await gateway.stop()


async def test_readyz_goes_503_while_alp_is_down_and_while_draining(sandbox: Sandbox) -> None:
    port = free_port()
    config = gateway_config(
        sandbox, health__interval_s=0.1, health__http_port=port, upstream__retry_attempts=1
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        assert (await http_get(port, "/readyz"))[0] == 200
        sandbox.faults.update({"error_rate": 1.0, "error_status": 502})

        async def down() -> bool:
            return await http_get(port, "/readyz") == (
                503,
                {"status": "NOT_SERVING", "reason": "ALP unreachable"},
            )

        await eventually(down)
        assert (await http_get(port, "/healthz"))[0] == 200  # alive: no restart for an outage
        sandbox.faults.update({"error_rate": 0.0})
        await eventually(lambda: _is(http_get(port, "/readyz"), 200))
        # a call in flight keeps the drain open; readiness says so meanwhile, liveness does not
        sandbox.faults.update({"delay_s": 1.0, "delay_path_prefix": "/currencies"})
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            slow = asyncio.ensure_future(
                market_data_pb2_grpc.MarketDataServiceStub(channel).ListCurrencies(
                    market_data_pb2.ListCurrenciesRequest(), timeout=5
                )
            )
            await asyncio.sleep(0.2)
            stopping = asyncio.ensure_future(gateway.stop(grace_s=3.0))
            await eventually(lambda: _is(http_get(port, "/readyz"), 503))
            assert await http_get(port, "/readyz") == (
                503,
                {"status": "NOT_SERVING", "reason": "draining"},
            )
            assert (await http_get(port, "/healthz"))[0] == 200
            await slow
            await stopping
    finally:
        await gateway.stop()


async def _is(reply: Any, status: int) -> bool:
    try:
        return bool((await reply)[0] == status)
    except aiohttp.ClientConnectionError:
        return False


async def test_one_refused_account_keeps_market_data_serving(
    watched: tuple[Gateway, Probe], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    gateway, probe = watched
    assert set((await probe.all()).values()) == {SERVING}
    assert gateway.upstream is not None
    tokens = gateway.upstream.account("desk-b").tokens

    async def checked_once() -> bool:  # the checks after the first one hold every token
        return tokens.expires_at is not None

    await eventually(checked_once)
    caplog.set_level(logging.WARNING, logger="gateway.health_monitor")
    sandbox.set_key_state("desk-b-key", "deleted")  # while its token lives

    async def desk_b_refused() -> bool:
        return "desk-b" in gateway.health.refused

    await eventually(desk_b_refused)
    # health services are not per account: account services serve while one account works
    assert set((await probe.all()).values()) == {SERVING}
    assert (await http_get(probe.http_port, "/readyz"))[0] == 200
    state = {a.name: a for a in gateway.state().accounts}
    assert state["desk-b"].refused == "HTTP 403 API_KEY_DELETED: api key deleted"
    assert state["demo"].refused == ""
    lines = [r.getMessage() for r in caplog.records if "desk-b" in r.getMessage()]
    assert lines == [
        "health: ALP refuses account desk-b: HTTP 403 API_KEY_DELETED: api key deleted"
    ]
    assert "desk-b-secret" not in caplog.text

    # the account's own calls fail precisely; the other account and market data work
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
        accounts = account_pb2_grpc.AccountServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await accounts.ListBalances(
                account_pb2.ListBalancesRequest(), metadata=(("x-alp-account", "desk-b"),)
            )
        details = details_of(info.value)
        assert details.code == grpc.StatusCode.PERMISSION_DENIED
        assert details.error_info is not None and details.error_info.reason == "API_KEY_DELETED"
        await accounts.ListBalances(account_pb2.ListBalancesRequest())  # demo
        market = market_data_pb2_grpc.MarketDataServiceStub(channel)
        await market.ListPairs(market_data_pb2.ListPairsRequest())

    # every account refused: the account services say so, market data still serves
    sandbox.set_key_state("demo-key", "inactive")

    async def accounts_down() -> bool:
        return await probe.status("alp.v3.AccountService") == NOT_SERVING

    await eventually(accounts_down)
    statuses = await probe.all()
    assert {statuses[name] for name in ACCOUNTS} == {NOT_SERVING}
    assert {statuses[name] for name in ("", *MARKET)} == {SERVING}
    assert (await http_get(probe.http_port, "/readyz"))[0] == 200  # ALP itself answers

    sandbox.set_key_state("demo-key", "active")
    sandbox.set_key_state("desk-b-key", "active")

    async def recovered() -> bool:
        return not gateway.health.refused and set((await probe.all()).values()) == {SERVING}

    await eventually(recovered)
    assert "health: ALP accepts account desk-b again" in caplog.text


async def test_a_429_storm_is_not_an_outage(
    watched: tuple[Gateway, Probe], sandbox: Sandbox
) -> None:
    gateway, probe = watched
    assert await probe.status() == SERVING
    checks_before = sandbox.stats.rest_requests[("GET", "/api/v3/time")]
    sandbox.faults.update({"error_rate": 1.0, "error_status": 429})
    samples: list[dict[str, int]] = []
    ready: list[int] = []
    for _ in range(20):
        samples.append(await probe.all())
        ready.append((await http_get(probe.http_port, "/readyz"))[0])
        await asyncio.sleep(0.1)
    assert sandbox.stats.injected_errors > 0
    assert sandbox.stats.rest_requests[("GET", "/api/v3/time")] > checks_before  # ALP was asked
    assert all(set(sample.values()) == {SERVING} for sample in samples), samples
    assert set(ready) == {200}
    assert not gateway.health.refused  # a 429 says nothing about the keys either


async def test_watch_streams_serving_then_the_change(
    watched: tuple[Gateway, Probe], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    _, probe = watched
    caplog.set_level(logging.INFO, logger="gateway.access")
    call = probe.stub.Watch(health_pb2.HealthCheckRequest(service="alp.v3.MarketDataService"))
    first = await asyncio.wait_for(call.read(), 5)
    assert first.status == SERVING
    sandbox.faults.update({"error_rate": 1.0, "error_status": 502})
    second = await asyncio.wait_for(call.read(), 5)
    assert second.status == NOT_SERVING
    sandbox.faults.update({"error_rate": 0.0})
    third = await asyncio.wait_for(call.read(), 5)
    assert third.status == SERVING
    call.cancel()
    await eventually(lambda: _logged(caplog, "rpc /grpc.health.v1.Health/Watch CANCELLED"))
    assert "INTERNAL" not in caplog.text


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text


async def test_http_health_is_plaintext_beside_a_tls_listener(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    port = free_port()
    config = gateway_config(
        sandbox,
        callers__dev_mode=False,
        tls__cert_file=str(pki["server_cert"]),
        tls__key_file=str(pki["server_key"]),
        tls__client_ca_file=str(pki["ca"]),
        health__http_port=port,
    ).with_callers(
        {"ops": CallerSpec("ops", frozenset({"admin"}), frozenset(), cert_subject="CN=ops")}
    )
    async with Gateway(config):
        assert await http_get(port, "/readyz") == (200, {"status": "SERVING", "reason": "serving"})


async def test_health_port_zero_serves_no_http(sandbox: Sandbox) -> None:
    async with Gateway(gateway_config(sandbox, health__http_port=0)) as gateway:
        assert gateway.health_http_port == 0


async def test_a_taken_health_port_is_logged_and_grpc_still_serves(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        async with Gateway(gateway_config(sandbox, health__http_port=port)) as gateway:
            assert gateway.health_http_port == 0
            assert f"cannot serve HTTP /healthz and /readyz on 127.0.0.1:{port}" in caplog.text
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                assert await Probe(channel, 0).status() == SERVING
