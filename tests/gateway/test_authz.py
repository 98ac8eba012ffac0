"""One authorization table, default deny: complete for every RPC and channel, enforced exactly."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import logging
import pkgutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import alp.v3
import grpc
import pytest
from alp.v3 import market_data_pb2, stream_pb2, stream_pb2_grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gateway.app import Gateway
from gateway.config import CallerSpec
from gateway.core import authz
from gateway.core.callers import token_digest
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of

SCOPE_NAMES = ("market", "account:read", "trade", "admin")
ACCOUNT_LISTS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"demo"}),
    frozenset({"desk-b"}),
    frozenset({"*"}),
)
SELECTIONS = (None, "desk-b")  # no x-alp-account header = the default account, "demo"
DEFAULT_ACCOUNT = "demo"


def served_methods() -> Iterator[MethodDescriptor]:
    """Every method of every service the gateway registers, from the generated descriptors."""
    for info in pkgutil.iter_modules(alp.v3.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"alp.v3.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                yield from service.methods
    for descriptor in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        for service in descriptor.services_by_name.values():
            yield from service.methods


def full_name(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def channel_names() -> list[str]:
    return [v.name for v in stream_pb2.Channel.DESCRIPTOR.values if v.number != 0]


# -- (a) the table is complete -----------------------------------------------------------------
def test_every_rpc_has_exactly_one_rule() -> None:
    methods = {full_name(m) for m in served_methods()}
    assert len(methods) > 25
    missing = sorted(methods - set(authz.METHODS))
    assert not missing, f"RPCs without an authorization rule (denied to everyone): {missing}"
    stale = sorted(set(authz.METHODS) - methods)
    assert not stale, f"rules for RPCs that do not exist: {stale}"


def test_every_subscribe_channel_has_a_rule() -> None:
    names = channel_names()
    assert len(names) == 7
    missing = sorted(set(names) - set(authz.CHANNELS))
    assert not missing, f"Subscribe channels without an authorization rule: {missing}"
    assert set(authz.CHANNELS) == set(names)
    assert authz.channel_rule("CHANNEL_UNSPECIFIED") is None


def test_every_subscribe_event_kind_comes_from_a_ruled_channel() -> None:
    # The oneof of SubscribeEvent is what a subscriber can receive; each kind has one channel.
    kind_channel = {
        "ticker": "CHANNEL_TICKERS",
        "trade": "CHANNEL_TRADES",
        "book_diff": "CHANNEL_BOOK_DIFFS",
        "depth": "CHANNEL_DEPTH",
        "order_book": "CHANNEL_ORDER_BOOK",
        "order": "CHANNEL_ORDER_UPDATES",
        "wallet": "CHANNEL_WALLET_UPDATES",
    }
    oneof = stream_pb2.SubscribeEvent.DESCRIPTOR.oneofs_by_name["event"]
    kinds = {f.name for f in oneof.fields} - {"status"}
    assert kinds == set(kind_channel), "a new SubscribeEvent kind needs a channel and a rule"
    for channel in kind_channel.values():
        assert authz.channel_rule(channel) is not None


def test_rules_are_well_formed() -> None:
    for method, rule in authz.METHODS.items():
        if rule.open:
            assert method.startswith(("/grpc.health.", "/grpc.reflection.")), method
            assert rule.scope is None and not rule.account
        elif rule.per_channel:
            assert method == authz.SUBSCRIBE and rule.scope is None
        else:
            assert rule.scope in authz.SCOPES, method
    # a channel grants exactly what the RPC streaming the same data grants, never more
    for channel, method in authz.CHANNEL_METHODS.items():
        assert authz.CHANNELS[channel] == authz.METHODS[method]
    private = {c for c, r in authz.CHANNELS.items() if r.account}
    assert private == {"CHANNEL_ORDER_UPDATES", "CHANNEL_WALLET_UPDATES"}
    assert all(authz.CHANNELS[c].scope == "account:read" for c in private)
    assert all(r.scope == "market" for c, r in authz.CHANNELS.items() if c not in private)


# -- (b) the running gateway allows exactly what the table says --------------------------------
@dataclass(frozen=True)
class Cell:
    what: str  # full method name, or "Subscribe CHANNEL_X"
    method: str
    kind: str  # unary_unary, unary_stream, stream_stream
    request: bytes
    rule: authz.Rule


BAD_PAIR = "not a pair"
# Requests that fail validation right after the gate, so an allowed cell costs no upstream call.
CHEAP_REQUESTS: dict[str, Message] = {
    "MarketDataService/ListTickers": market_data_pb2.ListTickersRequest(pair=BAD_PAIR),
    "MarketDataService/GetOrderBook": market_data_pb2.GetOrderBookRequest(pair=BAD_PAIR),
    "MarketDataService/ListCandles": market_data_pb2.ListCandlesRequest(pair=BAD_PAIR),
    "MarketDataService/ListTrades": market_data_pb2.ListTradesRequest(pair=BAD_PAIR),
    "StreamService/StreamTickers": stream_pb2.StreamTickersRequest(pairs=[BAD_PAIR]),
    "StreamService/StreamTrades": stream_pb2.StreamTradesRequest(pairs=[BAD_PAIR]),
    "StreamService/StreamBookDiffs": stream_pb2.StreamBookDiffsRequest(),
    "StreamService/StreamDepth": stream_pb2.StreamDepthRequest(),
    "StreamService/StreamOrderBook": stream_pb2.StreamOrderBookRequest(pair=BAD_PAIR),
    "StreamService/StreamOrderUpdates": stream_pb2.StreamOrderUpdatesRequest(pairs=[BAD_PAIR]),
    "StreamService/StreamWalletUpdates": stream_pb2.StreamWalletUpdatesRequest(
        currencies=["not a currency"]
    ),
    "Health/Watch": health_pb2.HealthCheckRequest(),
    "ServerReflection/ServerReflectionInfo": reflection_pb2.ServerReflectionRequest(
        list_services=""
    ),
}


def cells() -> list[Cell]:
    found: list[Cell] = []
    for method in served_methods():
        name = full_name(method)
        short = name.rsplit(".", 1)[-1]
        request = CHEAP_REQUESTS.get(short)
        payload = request.SerializeToString() if request is not None else b""
        kind = (
            "stream_stream"
            if method.client_streaming
            else "unary_stream"
            if method.server_streaming
            else "unary_unary"
        )
        found.append(Cell(name, name, kind, payload, authz.METHODS[name]))
    for channel in channel_names():
        # an invalid pair: allowed channels fail validation, nothing is subscribed upstream
        topic = stream_pb2.Topic(channel=stream_pb2.Channel.Value(channel), pair=BAD_PAIR)
        request = stream_pb2.SubscribeRequest(topics=[topic]).SerializeToString()
        found.append(
            Cell(
                f"Subscribe {channel}",
                authz.SUBSCRIBE,
                "unary_stream",
                request,
                authz.CHANNELS[channel],
            )
        )
    return found


@dataclass(frozen=True)
class Grant:
    token: str
    scopes: frozenset[str]
    accounts: frozenset[str]


def grants() -> list[Grant]:
    found: list[Grant] = []
    subsets = itertools.chain.from_iterable(
        itertools.combinations(SCOPE_NAMES, n) for n in range(len(SCOPE_NAMES) + 1)
    )
    for index, (scopes, accounts) in enumerate(itertools.product(subsets, ACCOUNT_LISTS)):
        found.append(Grant(f"matrix-token-{index}", frozenset(scopes), accounts))
    return found


GRANTS = grants()


def expected_allowed(rule: authz.Rule, grant: Grant, selected: str) -> bool:
    if rule.open:
        return True
    if rule.scope is not None and rule.scope not in grant.scopes:
        return False
    return not rule.account or "*" in grant.accounts or selected in grant.accounts


async def invoke(
    channel: grpc.aio.Channel, cell: Cell, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    """One call with raw bytes; the status it ended with (OK for a first message or clean end)."""
    try:
        if cell.kind == "unary_unary":
            await channel.unary_unary(cell.method)(cell.request, metadata=metadata, timeout=20)
        elif cell.kind == "unary_stream":
            call: Any = channel.unary_stream(cell.method)(
                cell.request, metadata=metadata, timeout=20
            )
            try:
                await call.read()
            finally:
                call.cancel()
        else:
            call = channel.stream_stream(cell.method)(metadata=metadata, timeout=20)
            try:
                await call.write(cell.request)
                await call.read()
            finally:
                call.cancel()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def matrix_channel(sandbox: Sandbox) -> AsyncIterator[tuple[Gateway, grpc.aio.Channel]]:
    callers = {
        g.token: CallerSpec(g.token, g.scopes, g.accounts, token_digest(g.token)) for g in GRANTS
    }
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(callers)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            yield gateway, channel


async def test_nothing_is_allowed_beyond_the_table(
    matrix_channel: tuple[Gateway, grpc.aio.Channel], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="gateway")  # thousands of refusals: keep them out
    gateway, channel = matrix_channel
    all_cells = cells()
    limit = asyncio.Semaphore(64)
    mismatches: list[str] = []
    codes: dict[str, int] = {}

    async def run(cell: Cell, grant: Grant | None, selected: str | None) -> None:
        metadata: tuple[tuple[str, str], ...] = ()
        if grant is not None:
            metadata += (("authorization", f"Bearer {grant.token}"),)
        if selected is not None:
            metadata += (("x-alp-account", selected),)
        async with limit:
            code = await invoke(channel, cell, metadata)
        codes[code.name] = codes.get(code.name, 0) + 1
        account = selected or DEFAULT_ACCOUNT
        if grant is None:
            ok = code != grpc.StatusCode.PERMISSION_DENIED and (
                cell.rule.open or code == grpc.StatusCode.UNAUTHENTICATED
            )
            expect = "open" if cell.rule.open else "UNAUTHENTICATED"
            who = "no credentials"
        else:
            allowed = expected_allowed(cell.rule, grant, account)
            ok = allowed == (code != grpc.StatusCode.PERMISSION_DENIED)
            expect = "allowed" if allowed else "PERMISSION_DENIED"
            who = f"scopes={sorted(grant.scopes)} accounts={sorted(grant.accounts)}"
        if not ok:
            mismatches.append(
                f"{cell.what} {who} account={account}: expected {expect}, got {code.name}"
            )

    jobs = [
        run(cell, grant, selected)
        for cell in all_cells
        for grant in [*GRANTS, None]
        for selected in SELECTIONS
    ]
    assert len(jobs) == len(all_cells) * (16 * len(ACCOUNT_LISTS) + 1) * len(SELECTIONS)
    await asyncio.gather(*jobs)
    assert not mismatches, f"{len(mismatches)} cells differ from the table:\n" + "\n".join(
        mismatches[:40]
    )
    # Allowed cells really ran past the gate (mostly INVALID_ARGUMENT on the cheap requests).
    assert codes.get("PERMISSION_DENIED", 0) > 0 and codes.get("INVALID_ARGUMENT", 0) > 0
    assert gateway.private_feeds == {}  # no private channel was ever subscribed


# -- the cases from the issue, end to end ------------------------------------------------------
SPEC = {
    "market-demo": CallerSpec(
        "market-demo", frozenset({"market"}), frozenset({"demo"}), token_digest("market-demo")
    ),
    "market-only": CallerSpec(
        "market-only", frozenset({"market"}), frozenset(), token_digest("market-only")
    ),
    "reader-demo": CallerSpec(
        "reader-demo",
        frozenset({"market", "account:read"}),
        frozenset({"demo"}),
        token_digest("reader-demo"),
    ),
}


def bearer(token: str, account: str | None = None) -> tuple[tuple[str, str], ...]:
    auth = (("authorization", f"Bearer {token}"),)
    return auth if account is None else (*auth, ("x-alp-account", account))


@pytest.fixture
async def secured(sandbox: Sandbox) -> AsyncIterator[tuple[Gateway, grpc.aio.Channel]]:
    config = gateway_config(sandbox, callers__dev_mode=False).with_callers(SPEC)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            yield gateway, channel


def subscribe(
    channel: grpc.aio.Channel, topics: list[Any], metadata: tuple[tuple[str, str], ...]
) -> Any:
    request = stream_pb2.SubscribeRequest(topics=topics)
    return stream_pb2_grpc.StreamServiceStub(channel).Subscribe(request, metadata=metadata)


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 10)
    return info.value


async def test_subscribe_private_channel_needs_account_read_before_anything_is_subscribed(
    secured: tuple[Gateway, grpc.aio.Channel], sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    gateway, channel = secured
    caplog.set_level(logging.WARNING, logger="gateway.rpc.caller_auth")
    for private in (stream_pb2.CHANNEL_ORDER_UPDATES, stream_pb2.CHANNEL_WALLET_UPDATES):
        topics = [
            stream_pb2.Topic(channel=stream_pb2.CHANNEL_TRADES, pair="BTC_USDT"),
            stream_pb2.Topic(channel=private),
        ]
        error = await refused(subscribe(channel, topics, bearer("market-demo", "demo")))
        details = details_of(error)
        name = stream_pb2.Channel.Name(private)
        assert details.code == grpc.StatusCode.PERMISSION_DENIED
        assert name in details.message and "account:read" in details.message
        assert details.error_info is not None
        assert details.error_info.metadata["scope"] == "account:read"
        line = next(r for r in caplog.records if name in r.getMessage())
        assert "caller=market-demo" in line.getMessage()
        assert "rpc=/alp.v3.StreamService/Subscribe" in line.getMessage()
        assert "account='demo'" in line.getMessage()
        assert "lacks scope 'account:read'" in line.getMessage()
    # the public topic asked for alongside was not subscribed either, nor any private feed
    await asyncio.sleep(0.1)
    assert sandbox.stats.ws_subscribe_commands["trade.BTC_USDT"] == 0
    assert gateway.private_feeds == {}
    # the per-channel RPC refuses the same caller the same way, and its access line names it
    caplog.set_level(logging.INFO, logger="gateway.access")
    orders = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderUpdates(
        stream_pb2.StreamOrderUpdatesRequest(), metadata=bearer("market-demo", "demo")
    )
    assert (await refused(orders)).code() == grpc.StatusCode.PERMISSION_DENIED
    access = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert any("StreamOrderUpdates PERMISSION_DENIED" in m for m in access), access
    assert all("caller=market-demo" in m for m in access if "StreamOrderUpdates" in m), access


async def test_subscribe_private_channel_needs_the_account_in_the_callers_list(
    secured: tuple[Gateway, grpc.aio.Channel], caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = secured
    caplog.set_level(logging.WARNING, logger="gateway.rpc.caller_auth")
    topics = [stream_pb2.Topic(channel=stream_pb2.CHANNEL_ORDER_UPDATES)]
    error = await refused(subscribe(channel, topics, bearer("reader-demo", "desk-b")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "CHANNEL_ORDER_UPDATES" in (error.details() or "")
    assert "desk-b" in (error.details() or "")
    assert any(
        "account='desk-b'" in r.getMessage() and "caller=reader-demo" in r.getMessage()
        for r in caplog.records
    )
    # with its own account the same caller gets its order updates
    call = subscribe(channel, topics, bearer("reader-demo", "demo"))
    try:
        first = await asyncio.wait_for(call.read(), 10)
        assert first.events[0].status.state == stream_pb2.STREAM_STATE_SUBSCRIBED
    finally:
        call.cancel()


async def test_market_only_caller_subscribes_to_public_trades(
    secured: tuple[Gateway, grpc.aio.Channel],
) -> None:
    _, channel = secured
    topics = [stream_pb2.Topic(channel=stream_pb2.CHANNEL_TRADES, pair="BTC_USDT")]
    call = subscribe(channel, topics, bearer("market-only"))
    try:
        first = await asyncio.wait_for(call.read(), 10)
        assert first.events[0].status.state == stream_pb2.STREAM_STATE_SUBSCRIBED
    finally:
        call.cancel()


async def test_channels_outside_the_table_are_denied(
    secured: tuple[Gateway, grpc.aio.Channel],
) -> None:
    _, channel = secured
    # a channel number this proto does not know is malformed input, not a permission question
    unknown = await refused(
        subscribe(channel, [stream_pb2.Topic(channel=99)], bearer("reader-demo", "demo"))  # type: ignore[arg-type]
    )
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "topics[0].channel" in (unknown.details() or "")
    # an unset channel likewise
    unset = await refused(subscribe(channel, [stream_pb2.Topic()], bearer("reader-demo", "demo")))
    assert unset.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unauthenticated_refusals_are_logged(
    secured: tuple[Gateway, grpc.aio.Channel], caplog: pytest.LogCaptureFixture
) -> None:
    _, channel = secured
    caplog.set_level(logging.WARNING, logger="gateway.rpc.caller_auth")
    topics = [stream_pb2.Topic(channel=stream_pb2.CHANNEL_TRADES)]
    error = await refused(subscribe(channel, topics, bearer("wrong-token")))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    messages = [r.getMessage() for r in caplog.records]
    assert any("caller=(unauthenticated)" in m and "Subscribe" in m for m in messages)
    assert not any("wrong-token" in m for m in messages)
