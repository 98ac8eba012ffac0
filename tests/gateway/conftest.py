"""Fixtures: the sandbox exchange and the gateway as real servers on 127.0.0.1:0, a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from gateway.app import SANDBOX_ACCOUNTS, Gateway
from gateway.config import AccountCredentials, GatewayConfig, load_config
from gateway.core.token_policy import Secret
from gateway.sandbox import Sandbox, SandboxConfig


def gateway_config(sandbox: Sandbox, **overrides: Any) -> GatewayConfig:
    accounts = {
        name: AccountCredentials(name, key, Secret(secret))
        for name, (key, secret) in SANDBOX_ACCOUNTS.items()
    }
    settings: dict[str, Any] = {
        "listen__port": 0,
        "upstream__rest_url": sandbox.rest_url,
        "upstream__ws_url": sandbox.ws_url,
        "upstream__public_rps": 0.0,
        "upstream__private_rps": 0.0,
        "upstream__public_cache_ttl_s": 0.0,
        "upstream__retry_base_s": 0.01,
        "upstream__retry_cap_s": 0.05,
        "ws__linger_s": 0.05,
        "ws__reconnect_base_s": 0.05,
        "ws__reconnect_cap_s": 0.2,
        "ws__auth_grace_s": 0.2,
        "accounts__default": "demo",
        "callers__dev_mode": True,
        "audit__path": "",
        "metrics__enabled": False,
        "health__interval_s": 60.0,
        "health__http_port": 0,  # tests run many gateways at once: no fixed port
    }
    settings.update(overrides)
    return load_config(env={}).with_accounts(accounts).with_overrides(**settings)


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(market=False)


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[Sandbox]:
    async with Sandbox(sandbox_config) as running:
        yield running


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def gateway(sandbox: Sandbox, gateway_overrides: dict[str, Any]) -> AsyncIterator[Gateway]:
    async with Gateway(gateway_config(sandbox, **gateway_overrides)) as running:
        yield running


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield ch
