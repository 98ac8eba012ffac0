"""Operating the gateway: audit trail, health flips, GetStatus, Prometheus metrics, drain."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import grpc
import pytest
from alp.v3 import (
    common_pb2,
    gateway_service_pb2,
    gateway_service_pb2_grpc,
    market_data_pb2,
    market_data_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
    trading_pb2,
    trading_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox, SandboxConfig
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of

ROOT = Path(__file__).resolve().parents[2]


def order(i: int) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        client_order_id=f"audit-{i}",
        limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price=f"{20000 + i}"),
    )


async def test_concurrent_orders_are_each_audited(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with Gateway(gateway_config(sandbox, audit__path=str(path))) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            trading = trading_pb2_grpc.TradingServiceStub(channel)
            replies = await asyncio.gather(*(trading.PlaceOrder(order(i)) for i in range(20)))
            with pytest.raises(grpc.aio.AioRpcError):
                await trading.PlaceOrder(trading_pb2.PlaceOrderRequest(pair="BTC_USDT"))
            await trading.CancelOrders(trading_pb2.CancelOrdersRequest(all=True))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    outcomes = [x for x in lines if x["phase"] == "outcome"]
    intents = [x for x in lines if x["phase"] == "intent"]
    refused = [x for x in lines if x["phase"] == "refused"]
    assert len(intents) == len(outcomes) == 21  # validated first: the bad request has no intent
    assert len(refused) == 1 and refused[0]["status"] == "INVALID_ARGUMENT"
    assert "request" not in refused[0] and refused[0]["fields"]
    placed = [x for x in outcomes if x["rpc"] == "PlaceOrder" and x["status"] == "OK"]
    assert sorted(int(x["response"]["order_ids"][0]) for x in placed) == sorted(
        r.order_id for r in replies
    )
    for entry in placed:
        assert entry["caller"] == "dev-mode" and entry["account"] == "demo"
        assert entry["request"]["pair"] == "BTC_USDT" and entry["latency_ms"] >= 0
        assert entry["request_id"]
    assert os.stat(path).st_mode & 0o777 == 0o600


async def test_unwritable_audit_refuses_trading(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with Gateway(gateway_config(sandbox, audit__path=str(path))) as gateway:
        path.unlink()
        path.mkdir()  # appending to a directory fails: the sink is broken
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await trading_pb2_grpc.TradingServiceStub(channel).PlaceOrder(order(1))
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.UNAVAILABLE and "audit" in details.message
    assert details.error_info is not None and details.error_info.reason == "AUDIT_UNAVAILABLE"
    assert sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")] == 0


async def test_health_follows_the_upstream() -> None:
    sandbox = Sandbox(SandboxConfig())
    await sandbox.start()
    port = sandbox.port
    config = gateway_config(sandbox, health__interval_s=0.2, upstream__retry_attempts=1)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str = "") -> int:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                return reply.status

            async def wait_for(wanted: int) -> None:
                for _ in range(100):
                    if await status() == wanted and await status("alp.v3.TradingService") == wanted:
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"health never became {wanted}")

            assert await status() == health_pb2.HealthCheckResponse.SERVING
            await sandbox.stop()
            await wait_for(health_pb2.HealthCheckResponse.NOT_SERVING)
            sandbox = Sandbox(SandboxConfig())
            await sandbox.start("127.0.0.1", port)
            try:
                await wait_for(health_pb2.HealthCheckResponse.SERVING)
            finally:
                await sandbox.stop()


async def test_status_and_metrics_move(sandbox: Sandbox) -> None:
    config = gateway_config(sandbox, metrics__enabled=True, metrics__port=0)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stream = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
                stream_pb2.StreamTradesRequest(pairs=["BTC_USDT", "ETH_USDT"])
            )
            async for _ in stream:
                break
            market = market_data_pb2_grpc.MarketDataServiceStub(channel)
            for _ in range(3):
                await market.ListPairs(market_data_pb2.ListPairsRequest())
            await trading_pb2_grpc.TradingServiceStub(channel).PlaceOrder(order(1))
            status = await gateway_service_pb2_grpc.GatewayServiceStub(channel).GetStatus(
                gateway_service_pb2.GetStatusRequest()
            )
            assert status.serving and status.streams == 1 and status.subscribers == 2
            topics = sorted(t for c in status.connections for t in c.topics)
            assert topics == ["trade.BTC_USDT", "trade.ETH_USDT"]
            demo = next(a for a in status.accounts if a.name == "demo")
            assert demo.token_expires_at.seconds > time.time() and demo.token_refreshes == 1
            assert status.upstream_calls >= 5
            assert "public" in status.rate_limit_headroom
            url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(url, timeout=5).read().decode()
            )
            stream.cancel()

    def value(pattern: str) -> float:
        match = re.search(pattern + r" ([0-9.e+]+)", text)
        assert match, pattern
        return float(match.group(1))

    assert (
        value(r'alp_gateway_rpc_total\{code="OK",method="/alp.v3.MarketDataService/ListPairs"\}')
        == 3
    )
    assert (
        value(
            r'alp_gateway_upstream_requests_total\{method="POST",path="/trading/order",status="200"\}'
        )
        == 1
    )
    assert value(r"alp_gateway_ws_topics") == 2
    assert value(r"alp_gateway_streams_active") == 1
    assert value(r"alp_gateway_token_refreshes_total") == 1
    assert "demo-secret" not in text


def test_sigterm_drains_a_real_process(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        ALP_GATEWAY_AUDIT_PATH=str(tmp_path / "a.jsonl"),
        ALP_GATEWAY_METRICS_PORT="0",
        ALP_GATEWAY_DRAIN_GRACE_S="5",
        ALP_GATEWAY_SANDBOX_MARKET="false",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--sandbox", "--dev-mode", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    target = sandbox_url = ""
    while not (target and sandbox_url):
        line = process.stdout.readline()
        assert line, "gateway exited early"
        if m := re.search(r"serving gRPC on ([\d.]+:\d+)", line):
            target = m.group(1)
        if m := re.search(r"embedded sandbox (http://[\d.:]+)/api/v3", line):
            sandbox_url = m.group(1)

    async def scenario() -> tuple[grpc.StatusCode, str, bool]:
        async with aiohttp.ClientSession() as http:
            await (await http.put(f"{sandbox_url}/admin/faults", json={"delay_s": 1.0})).read()
        async with grpc.aio.insecure_channel(target) as channel:
            stream = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
                stream_pb2.StreamTradesRequest()
            )
            await stream.read()  # subscribed status
            slow = asyncio.ensure_future(
                market_data_pb2_grpc.MarketDataServiceStub(channel).GetServerTime(
                    market_data_pb2.GetServerTimeRequest(), timeout=10
                )
            )
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            reply = await slow  # the in-flight call finishes inside the grace
            try:
                while True:
                    message = await stream.read()
                    if message is grpc.aio.EOF:
                        return grpc.StatusCode.OK, "", reply.server_time.seconds > 0
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or "", reply.server_time.seconds > 0

    code, details, answered = asyncio.run(scenario())
    assert process.wait(timeout=15) == 0
    assert answered
    assert code == grpc.StatusCode.UNAVAILABLE and "draining" in details
