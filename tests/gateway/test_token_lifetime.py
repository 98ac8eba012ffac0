"""A token lifetime shorter than token.refresh_margin_s costs one /auth, not one per call."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc

from gateway.sandbox import Sandbox


@pytest.mark.parametrize("gateway_overrides", [{"token__refresh_margin_s": 60.0}])
async def test_short_tokens_are_reused_within_their_life(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    sandbox.faults.update({"token_lifetime_s": 20.0})  # shorter than the 60 s margin
    stub = account_pb2_grpc.AccountServiceStub(channel)
    await asyncio.gather(*(stub.ListBalances(account_pb2.ListBalancesRequest()) for _ in range(20)))
    await asyncio.gather(*(stub.ListBalances(account_pb2.ListBalancesRequest()) for _ in range(20)))
    assert sandbox.stats.auth_calls == 1
