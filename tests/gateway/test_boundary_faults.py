"""The RPC boundary under hostile input and a failing audit sink (found by review; each test failed
before its fix): decimal places counted beyond 28 digits, a huge or token-like x-alp-account never
echoed, `inf` settings refused naming the setting, an intent line cut short by a full disk refuses
the order, a deadline during the intent's fsync still gets its outcome line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
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
from gateway.config import CallerSpec, load_config
from gateway.core.callers import token_digest
from gateway.errors import ConfigError
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of


async def test_limit_price_precision_checked_beyond_28_digits(channel: grpc.aio.Channel) -> None:
    """BTC_USDT has a price precision; a 40-digit price with 35 decimals must be refused."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    # 30 significant digits: within MAX_DIGITS (40) and within what ALP's parser takes, but
    # decimal_places() normalizes in the default 28-digit context and sees "20000"
    price = "20000." + "0" * 24 + "1"
    request = trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price=price),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        reply = await stub.PlaceOrder(request, timeout=10)
        pytest.fail(f"order placed upstream: {reply}")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(info.value).fields == ["limit.limit_price"]


async def test_base_amount_precision_checked_beyond_28_digits(channel: grpc.aio.Channel) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    amount = "0.01" + "0" * 28 + "1"  # 30 significant digits, far past the amount precision
    request = trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        limit=trading_pb2.LimitOrder(base_amount=amount, limit_price="20000"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        reply = await stub.PlaceOrder(request, timeout=10)
        pytest.fail(f"order placed upstream: {reply}")
    assert details_of(info.value).fields == ["limit.base_amount"]


@pytest.mark.parametrize("size", [7000])
async def test_huge_unknown_account_header_gets_a_readable_not_found(
    channel: grpc.aio.Channel, size: int
) -> None:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    account = "x" * size
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListBalances(
            account_pb2.ListBalancesRequest(), metadata=(("x-alp-account", account),), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()
    assert len(info.value.details() or "") < 300  # the caller's text is not echoed in full


async def test_huge_account_header_refused_by_authz_gets_a_readable_permission_denied(
    sandbox: Sandbox,
) -> None:
    token = "review-token-0123456789"
    callers = {
        "reader": CallerSpec(
            "reader", frozenset({"account:read"}), frozenset({"demo"}), token_digest(token)
        )
    }
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(callers)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = account_pb2_grpc.AccountServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListBalances(
                    account_pb2.ListBalancesRequest(),
                    metadata=(("authorization", f"Bearer {token}"), ("x-alp-account", "y" * 7000)),
                    timeout=10,
                )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
    assert len(info.value.details() or "") < 300


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small file system that fills up (needs CAP_SYS_ADMIN; skipped otherwise)."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_audit_intent_cut_short_by_a_full_disk_refuses_the_order(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Disk full in the middle of the intent line: os.write writes part of it and returns a short
    count (no error). The call must be refused (AUDIT_UNAVAILABLE) and nothing sent; today the
    torn line counts as written and the order goes to ALP."""
    page = os.sysconf("SC_PAGE_SIZE")
    with tiny_tmpfs(tmp_path / "tiny", f"{2 * page}") as disk:
        path = disk / "audit.jsonl"
        (disk / "filler").write_bytes(b"x" * page)  # one of the two pages
        path.write_bytes((b"#" * 99 + b"\n") * ((page - 60) // 100))  # the last page: ~60 B free
        async with Gateway(gateway_config(sandbox, audit__path=str(path))) as gateway:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                stub = trading_pb2_grpc.TradingServiceStub(channel)
                request = trading_pb2.PlaceOrderRequest(
                    pair="BTC_USDT",
                    side=common_pb2.ORDER_SIDE_BUY,
                    client_order_id="review-full-disk",
                    limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price="20000"),
                )
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    reply = await stub.PlaceOrder(request, timeout=10)
                    pytest.fail(f"order sent with a torn intent line: {reply}")
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        tail = path.read_bytes().split(b"\n")[-1]
        assert tail == b"", f"torn audit line left behind: {tail!r}"


async def test_caller_deadline_during_a_slow_intent_write_still_gets_an_outcome_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A slow fsync (simulated by holding the audit's own lock) outlasts the caller's deadline:
    grpc cancels the handler while the worker thread is about to write the intent. The intent
    line lands anyway; exactly one outcome line must follow it (here: none ever does)."""
    path = tmp_path / "audit.jsonl"
    async with Gateway(gateway_config(sandbox, audit__path=str(path))) as gateway:
        assert gateway.audit is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = trading_pb2_grpc.TradingServiceStub(channel)
            request = trading_pb2.PlaceOrderRequest(
                pair="BTC_USDT",
                side=common_pb2.ORDER_SIDE_BUY,
                client_order_id="review-slow-audit",
                limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price="20000"),
            )
            gateway.audit._lock.acquire()  # the disk is slow
            try:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.PlaceOrder(
                        request, metadata=(("x-request-id", "review-slow-1"),), timeout=1.0
                    )
                assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                await asyncio.sleep(0.3)
            finally:
                gateway.audit._lock.release()
            await asyncio.sleep(1.0)  # the worker thread finishes its write
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [line["phase"] for line in lines if line.get("request_id") == "review-slow-1"]
    assert mine.count("intent") == 1
    assert mine.count("outcome") == 1, mine


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("ALP_GATEWAY_UPSTREAM_PRIVATE_RPS", "upstream.private_rps"),
        ("ALP_GATEWAY_UPSTREAM_TIMEOUT_S", "upstream.timeout_s"),
        ("ALP_GATEWAY_DRAIN_GRACE_S", "drain.grace_s"),
    ],
)
def test_infinite_setting_is_refused_naming_it(variable: str, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={variable: "inf"})
    assert info.value.setting == setting


async def test_infinite_private_rps_does_not_crash_the_start(sandbox: Sandbox) -> None:
    """Accepted by the schema, `inf` only blew up when the limiter was built (math.floor(inf))."""
    try:
        config = gateway_config(sandbox, upstream__private_rps=float("inf"))
        async with Gateway(config) as gateway:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                stub = account_pb2_grpc.AccountServiceStub(channel)
                await stub.ListBalances(account_pb2.ListBalancesRequest(), timeout=10)
    except ConfigError as exc:  # refusing it at load, naming the setting, is fine too
        assert exc.setting == "upstream.private_rps"


async def test_infinite_caller_rate_is_refused_or_served_never_internal(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token = "review-token-inf-rate"
    toml = tmp_path / "gateway.toml"
    toml.write_text(
        "[callers.fast]\n"
        f'token_sha256 = "{token_digest(token)}"\n'
        'scopes = ["market"]\n'
        "rate_per_s = inf\n"
    )
    try:
        callers = load_config(str(toml), env={}).callers
    except ConfigError as exc:
        assert exc.setting == "callers.fast.rate_per_s"
        return
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(callers)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
            await stub.GetServerTime(
                market_data_pb2.GetServerTimeRequest(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=10,
            )


async def test_bearer_token_sent_as_account_never_reaches_logs_or_errors(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller that puts its token in the wrong header (x-alp-account): the token must not be
    echoed into the access log, the refusal log or the status message."""
    caplog.set_level(logging.DEBUG)
    token = "tok_" + "Q7" * 20
    callers = {
        "reader": CallerSpec(
            "reader", frozenset({"account:read"}), frozenset({"demo"}), token_digest(token)
        )
    }
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(callers)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = account_pb2_grpc.AccountServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListBalances(
                    account_pb2.ListBalancesRequest(),
                    metadata=(("authorization", f"Bearer {token}"), ("x-alp-account", token)),
                    timeout=10,
                )
    assert token not in caplog.text
    assert token not in (info.value.details() or "")
