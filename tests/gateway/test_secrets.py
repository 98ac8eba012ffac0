"""Secrets never leak: not in logs (any level), errors, reprs, or the audit of a failing run."""

from __future__ import annotations

import logging

import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc, common_pb2, trading_pb2, trading_pb2_grpc

from gateway.app import Gateway
from gateway.config import AccountCredentials
from gateway.core.token_policy import Secret
from gateway.logs import RedactingFilter
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config


async def test_no_secret_or_token_in_logs_errors_or_reprs(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = gateway_config(sandbox).with_accounts(
        {
            "demo": AccountCredentials("demo", "demo-key", Secret("demo-secret")),
            "broken": AccountCredentials("broken", "demo-key", Secret("wrong-secret-xyz")),
        }
    )
    errors: list[str] = []
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            accounts = account_pb2_grpc.AccountServiceStub(channel)
            trading = trading_pb2_grpc.TradingServiceStub(channel)
            await accounts.ListBalances(account_pb2.ListBalancesRequest())
            sandbox.revoke_tokens()  # forces a 401 and a re-authentication
            await accounts.ListBalances(account_pb2.ListBalancesRequest())
            for metadata, request in (
                ((("x-alp-account", "broken"),), account_pb2.ListBalancesRequest()),
                (
                    (),
                    trading_pb2.PlaceOrderRequest(pair="BTC_USDT", side=common_pb2.ORDER_SIDE_BUY),
                ),
            ):
                try:
                    stub = (
                        accounts.ListBalances
                        if isinstance(request, account_pb2.ListBalancesRequest)
                        else trading.PlaceOrder
                    )
                    await stub(request, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    errors.append(f"{exc.details()} {exc.trailing_metadata()!r}")
            assert gateway.upstream is not None
            session = gateway.upstream.account("demo")
            token = session.tokens.current()
            assert token is not None
            reprs = [repr(config), repr(config.accounts), repr(session), repr(session.tokens)]
    haystack = caplog.text + "\n".join(errors) + "\n".join(reprs)
    for secret in ("demo-secret", "wrong-secret-xyz", token):
        assert secret not in haystack
    assert len(errors) == 2


def test_redacting_filter_scrubs_secrets_and_jwts() -> None:
    redactor = RedactingFilter(["s3cr3t-value"])
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "key %s token %s",
        ("s3cr3t-value", "eyJabcdef.eyJghijkl.sig12345"),
        None,
    )
    redactor.filter(record)
    assert record.getMessage() == "key <redacted> token <redacted-jwt>"
