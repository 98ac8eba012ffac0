"""Caller identity and scopes for unary and streaming calls, over plaintext, TLS and mTLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from alp.v3 import (
    account_pb2,
    account_pb2_grpc,
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

from gateway.app import Gateway
from gateway.config import CallerSpec
from gateway.core.callers import token_digest
from gateway.sandbox import Sandbox
from tests.gateway.certs import make_pki
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of

CALLERS = {
    "reader": CallerSpec(
        "reader", frozenset({"market"}), frozenset(), token_digest("reader-token")
    ),
    "trader": CallerSpec(
        "trader",
        frozenset({"market", "account:read", "trade"}),
        frozenset({"demo"}),
        token_digest("trader-token"),
    ),
    "ops": CallerSpec("ops", frozenset({"admin"}), frozenset(), token_digest("ops-token")),
    "svc": CallerSpec(
        "svc", frozenset({"market", "account:read"}), frozenset({"*"}), "", "CN=svc-mtls"
    ),
}


def bearer(token: str, account: str = "demo") -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"), ("x-alp-account", account))


@pytest.fixture
async def secured(sandbox: Sandbox) -> AsyncIterator[grpc.aio.Channel]:
    # plaintext: certificate callers would be refused by the start-up checks (nothing checks
    # client certificates without tls.client_ca_file), so only the bearer callers here
    bearer_only = {name: c for name, c in CALLERS.items() if not c.cert_subject}
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(bearer_only)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            yield channel


async def first_stream_message(call: grpc.aio.UnaryStreamCall) -> object:  # type: ignore[type-arg]
    async for message in call:
        return message
    return None


CASES = [
    # (what, token, account, expected code, scope named in the message)
    ("ListPairs", "", "demo", grpc.StatusCode.UNAUTHENTICATED, ""),
    ("ListPairs", "bogus", "demo", grpc.StatusCode.UNAUTHENTICATED, ""),
    ("ListPairs", "reader-token", "demo", grpc.StatusCode.OK, ""),
    ("ListBalances", "reader-token", "demo", grpc.StatusCode.PERMISSION_DENIED, "account:read"),
    ("PlaceOrder", "reader-token", "demo", grpc.StatusCode.PERMISSION_DENIED, "trade"),
    ("StreamTrades", "reader-token", "demo", grpc.StatusCode.OK, ""),
    (
        "StreamOrderUpdates",
        "reader-token",
        "demo",
        grpc.StatusCode.PERMISSION_DENIED,
        "account:read",
    ),
    ("StreamTrades", "", "demo", grpc.StatusCode.UNAUTHENTICATED, ""),
    ("ListBalances", "trader-token", "demo", grpc.StatusCode.OK, ""),
    ("ListBalances", "trader-token", "desk-b", grpc.StatusCode.PERMISSION_DENIED, "desk-b"),
    ("PlaceOrder", "trader-token", "demo", grpc.StatusCode.OK, ""),
    ("PlaceOrder", "trader-token", "desk-b", grpc.StatusCode.PERMISSION_DENIED, "desk-b"),
    ("StreamOrderUpdates", "trader-token", "demo", grpc.StatusCode.OK, ""),
    ("StreamOrderUpdates", "trader-token", "desk-b", grpc.StatusCode.PERMISSION_DENIED, "desk-b"),
    ("GetStatus", "trader-token", "demo", grpc.StatusCode.PERMISSION_DENIED, "admin"),
    ("GetStatus", "ops-token", "demo", grpc.StatusCode.OK, ""),
]


async def call(channel: grpc.aio.Channel, what: str, metadata: tuple[tuple[str, str], ...]) -> None:
    if what == "ListPairs":
        await market_data_pb2_grpc.MarketDataServiceStub(channel).ListPairs(
            market_data_pb2.ListPairsRequest(), metadata=metadata
        )
    elif what == "ListBalances":
        await account_pb2_grpc.AccountServiceStub(channel).ListBalances(
            account_pb2.ListBalancesRequest(), metadata=metadata
        )
    elif what == "PlaceOrder":
        await trading_pb2_grpc.TradingServiceStub(channel).PlaceOrder(
            trading_pb2.PlaceOrderRequest(
                pair="BTC_USDT",
                side=common_pb2.ORDER_SIDE_BUY,
                limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price="20000"),
            ),
            metadata=metadata,
        )
    elif what == "GetStatus":
        await gateway_service_pb2_grpc.GatewayServiceStub(channel).GetStatus(
            gateway_service_pb2.GetStatusRequest(), metadata=metadata
        )
    else:
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        if what == "StreamTrades":
            stream = stub.StreamTrades(
                stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"]), metadata=metadata
            )
        else:
            stream = stub.StreamOrderUpdates(
                stream_pb2.StreamOrderUpdatesRequest(), metadata=metadata
            )
        try:
            assert await first_stream_message(stream) is not None
        finally:
            stream.cancel()


@pytest.mark.parametrize("what,token,account,code,named", CASES)
async def test_scopes_and_accounts(
    secured: grpc.aio.Channel,
    what: str,
    token: str,
    account: str,
    code: grpc.StatusCode,
    named: str,
) -> None:
    metadata = bearer(token, account) if token else (("x-alp-account", account),)
    if code == grpc.StatusCode.OK:
        await call(secured, what, metadata)
        return
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(secured, what, metadata)
    details = details_of(info.value)
    assert details.code == code
    assert named in details.message
    if (
        named
        and code == grpc.StatusCode.PERMISSION_DENIED
        and named in ("trade", "account:read", "admin")
    ):
        assert details.error_info is not None and details.error_info.metadata["scope"] == named


async def test_health_needs_no_credentials(secured: grpc.aio.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reply = await health_pb2_grpc.HealthStub(secured).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_dev_mode_must_be_explicit(sandbox: Sandbox) -> None:
    import asyncio

    from gateway.errors import ConfigError

    config = gateway_config(sandbox, callers__dev_mode=False)
    with pytest.raises(ConfigError, match="callers"):
        asyncio.run(Gateway(config).start())


async def test_tls_and_mtls_identity(sandbox: Sandbox, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = gateway_config(
        sandbox,
        callers__dev_mode=False,
        tls__cert_file=str(pki["server_cert"]),
        tls__key_file=str(pki["server_key"]),
        tls__client_ca_file=str(pki["ca"]),
    ).with_callers(CALLERS)
    async with Gateway(config) as gateway:
        target = f"127.0.0.1:{gateway.port}"
        mtls = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].read_bytes(),
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client_cert"].read_bytes(),
        )
        async with grpc.aio.secure_channel(target, mtls) as channel:
            # identity from the certificate subject: svc may read accounts, may not trade
            await call(channel, "ListBalances", (("x-alp-account", "desk-b"),))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(channel, "PlaceOrder", (("x-alp-account", "demo"),))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # a bearer token still wins over the certificate
            await call(channel, "PlaceOrder", bearer("trader-token"))
        no_client_cert = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        async with grpc.aio.secure_channel(target, no_client_cert) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(channel, "ListPairs", bearer("reader-token"))
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        async with grpc.aio.insecure_channel(target) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await call(channel, "ListPairs", bearer("reader-token"))
