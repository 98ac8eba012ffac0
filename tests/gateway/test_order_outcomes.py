"""Order outcomes under faults the order-safety matrix did not drive: an unreadable 2xx, the
gateway's own rate limit, cancels that cannot be verified (an id beyond the listed 100, orders
newer than a cancel-all), a drain during a cancel's lookup, a shared lookup whose first caller went away. Never doubled, never "failed" for an
order that exists, ambiguity answered ORDER_OUTCOME_UNKNOWN."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from alp.v3 import trading_pb2, trading_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox
from gateway.sandbox.engine.records import OrderRequest
from tests.cluster.conftest import RedisServer, running_redis
from tests.gateway.conftest import gateway_config
from tests.gateway.test_order_safety import Outcome, attempt, order
from tests.gateway.test_streams import eventually

DEMO = 1001  # the sandbox's account id of `demo`


place = attempt  # PlaceOrder answered as an Outcome, never raising


async def cancel(stub: Any, request: Any, within: float) -> Outcome:
    try:
        return Outcome(reply=await stub.CancelOrders(request, timeout=within))
    except grpc.aio.AioRpcError as exc:
        return Outcome(error=exc)


def held(sandbox: Sandbox, price: str) -> list[int]:
    return [o.id for o in sandbox.exchange.orders(DEMO, 10_000) if o.price == Decimal(price)]


def posts(sandbox: Sandbox) -> int:
    return sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")]


async def warm(stub: Any) -> None:
    await stub.PlaceOrder(order("15000"))  # pairs cached, token held, newest id known


# -- 2. a 2xx whose body is not JSON: placed, yet forgotten -> a retry doubles it --------------
@contextlib.asynccontextmanager
async def garbling_proxy(target: str) -> AsyncIterator[str]:
    """A real HTTP proxy in front of the sandbox that turns PlaceOrder's 2xx body into HTML (a
    WAF/load-balancer page): the order was applied, the answer is unreadable."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with session.request(
            request.method,
            target + request.path_qs,
            data=body or None,
            headers=headers,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            status = upstream.status
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() in ("content-type", "retry-after")
            }
        if request.method == "POST" and request.path == "/api/v3/trading/order" and status < 300:
            return web.Response(status=200, body=b"<html>OK</html>", content_type="text/html")
        return web.Response(status=status, body=payload, headers=out_headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()


async def test_unreadable_2xx_to_place_order_is_not_forgotten(sandbox: Sandbox) -> None:
    async with garbling_proxy(f"http://127.0.0.1:{sandbox.port}") as proxy:
        config = gateway_config(sandbox, upstream__rest_url=proxy + "/api/v3")
        async with Gateway(config) as gateway:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
                stub = trading_pb2_grpc.TradingServiceStub(channel)
                first = await place(stub, order("20502", cid="g-1"), within=5.0)
                assert len(held(sandbox, "20502")) == 1  # ALP applied it
                retry = await place(stub, order("20502", cid="g-1"), within=5.0)
    # current code: first = INTERNAL UPSTREAM_PROTOCOL, the key forgotten, the retry places again
    assert len(held(sandbox, "20502")) == 1, (first, retry)  # never doubled
    # the caller must not hear a failure for an order that exists
    assert first.reason in ("OK", "ORDER_OUTCOME_UNKNOWN"), first


# -- 3. a PlaceOrder refused by the gateway's own rate limit leaves an UNKNOWN intent --------
@pytest.mark.parametrize("gateway_overrides", [{"upstream__private_rps": 1.0}])
async def test_rate_limited_place_order_stores_nothing(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    """RESOURCE_EXHAUSTED from the gateway's limiter: nothing was sent. README: "A request
    refused before anything was sent stores nothing" -> the retry with the key must place."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)  # uses the one send of this second
    refused = await place(stub, order("20503", cid="rl-1"), within=0.6)
    assert refused.error is not None, refused
    assert refused.error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, refused
    assert posts(sandbox) == 1 and held(sandbox, "20503") == []
    await asyncio.sleep(1.2)
    retry = await place(stub, order("20503", cid="rl-1"), within=5.0)
    assert retry.error is None, retry  # current code: RECHECK of a never-sent order
    assert held(sandbox, "20503") == [retry.reply.order_id]


# -- 4. cancel by id of an order beyond the 100 listed: applied, then called "not applied" -----
def direct_order(sandbox: Sandbox, price: str) -> int:
    """An order the account placed elsewhere (another client, ALP's web UI)."""
    request = OrderRequest(
        "BTC_USDT", "LIMIT", "BUY", base_amount=Decimal("0.01"), limit_price=Decimal(price)
    )
    return sandbox.exchange.place_order(DEMO, request, time.time())


async def test_ambiguous_cancel_of_an_unlisted_order_is_not_called_not_applied(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    """GET /accounts/order lists only the 100 newest orders. A cancel that ALP applied and then
    answered 500 must not be reported CANCEL_NOT_APPLIED because the order is not in that list."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    target = (await stub.PlaceOrder(order("1000"))).order_id
    for _ in range(100):
        direct_order(sandbox, "1001")
    sandbox.faults.update(
        {
            "error_rate": 1.0,
            "error_status": 500,
            "error_after_apply": True,
            "error_path_prefix": "/trading",
        }
    )
    request = trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[target]))
    outcome = await cancel(stub, request, within=5.0)
    status = sandbox.exchange.order(DEMO, target)
    assert status is not None and status.status == "CANCELLED"  # ALP cancelled it
    assert outcome.reason != "CANCEL_NOT_APPLIED", outcome


# -- 5. cancel-all applied, a new order arrives before the read-back: called "not applied" ----
async def test_ambiguous_cancel_all_is_not_called_not_applied_because_of_a_newer_order(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    old = (await stub.PlaceOrder(order("1002"))).order_id
    sandbox.faults.update(
        {
            "error_rate": 1.0,
            "error_status": 500,
            "error_after_apply": True,
            "error_path_prefix": "/trading",
            "delay_after_s": 0.5,
            "delay_path_prefix": "/trading",
        }
    )
    call = asyncio.create_task(cancel(stub, trading_pb2.CancelOrdersRequest(all=True), 5.0))
    await eventually(lambda: sandbox.exchange.order(DEMO, old).status == "CANCELLED")  # type: ignore[union-attr]
    direct_order(sandbox, "1003")  # placed after the cancel-all, before its answer
    outcome = await call
    assert sandbox.exchange.order(DEMO, old).status == "CANCELLED"  # type: ignore[union-attr]
    assert outcome.reason != "CANCEL_NOT_APPLIED", outcome  # the cancel-all did happen


# -- 6. drain cut while a cancel is being reconciled ------------------------------------------
@pytest.mark.slow  # a fault window of seconds
async def test_drain_cut_during_cancel_reconciliation_answers_outcome_unknown(
    sandbox: Sandbox,
) -> None:
    """README: order calls still running near the end of drain.grace_s are cut and answered
    ORDER_OUTCOME_UNKNOWN. A CancelOrders cut inside _settle_cancel escapes as a bare cancel."""
    gateway = Gateway(gateway_config(sandbox))
    await gateway.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = trading_pb2_grpc.TradingServiceStub(channel)
            target = (await stub.PlaceOrder(order("1004"))).order_id
            sandbox.faults.update(
                {
                    "error_rate": 1.0,
                    "error_status": 500,
                    "error_after_apply": True,
                    "error_path_prefix": "/trading",
                    "delay_s": 5.0,
                    "delay_path_prefix": "/accounts",  # the read-back hangs
                }
            )
            request = trading_pb2.CancelOrdersRequest(
                order_ids=trading_pb2.OrderIdList(ids=[target])
            )
            call = asyncio.create_task(cancel(stub, request, within=15.0))
            await eventually(
                lambda: sandbox.stats.rest_requests[("GET", "/api/v3/accounts/order")] >= 1
            )
            await gateway.stop(grace_s=1.0)
            outcome = await call
    finally:
        await gateway.stop(grace_s=0.1)
    assert outcome.reason == "ORDER_OUTCOME_UNKNOWN", outcome


# -- 7. a shared reconciliation listing whose leader's call is cancelled ----------------------
@pytest.mark.parametrize("leader_cancelled", [False, True])  # False: the control, passes
async def test_joiner_of_a_cancelled_leaders_listing_gets_a_documented_outcome(
    channel: grpc.aio.Channel, sandbox: Sandbox, leader_cancelled: bool
) -> None:
    """A and B are both ambiguous (applied, answered 500); B's lookup joins the listing A's
    lookup started. A's caller goes away (cancel). B must still end OK or ORDER_OUTCOME_UNKNOWN,
    never a bare CANCELLED/UNKNOWN status for a call its own caller did not cancel."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update(
        {
            "error_rate": 1.0,
            "error_status": 500,
            "error_after_apply": True,
            "error_path_prefix": "/trading",
            "delay_s": 2.0,
            "delay_path_prefix": "/accounts",
        }
    )
    call_a = stub.PlaceOrder(order("20511", cid="la"), timeout=10.0)
    await eventually(lambda: sandbox.stats.rest_requests[("GET", "/api/v3/accounts/order")] >= 1)
    b = asyncio.create_task(place(stub, order("20512", cid="lb"), within=10.0))
    await eventually(lambda: posts(sandbox) >= 3)
    await asyncio.sleep(0.2)  # B's lookup is waiting on A's listing
    if leader_cancelled:
        call_a.cancel()
    got_b = await b
    call_a.cancel()
    assert held(sandbox, "20512") != []  # B exists at ALP
    assert got_b.reason in ("OK", "ORDER_OUTCOME_UNKNOWN"), got_b


# -- 10. the public single-flight: a joiner of a cancelled leader hangs to its deadline -------
@pytest.mark.parametrize("gateway_overrides", [{"upstream__public_cache_ttl_s": 1.0}])
@pytest.mark.parametrize("leader_cancelled", [False, True])  # False: the control, passes
async def test_public_cache_joiner_survives_the_leaders_cancellation(
    channel: grpc.aio.Channel,
    sandbox: Sandbox,
    gateway_overrides: dict[str, Any],
    leader_cancelled: bool,
) -> None:
    from alp.v3 import market_data_pb2, market_data_pb2_grpc

    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    request = market_data_pb2.GetOrderBookRequest(pair="BTC_USDT")
    await stub.GetOrderBook(request)  # pairs known
    await asyncio.sleep(1.1)  # cache entry expired
    sandbox.faults.update({"delay_s": 1.0, "delay_path_prefix": "/orderbook"})
    leader = stub.GetOrderBook(request, timeout=5.0)
    await eventually(lambda: sandbox.stats.rest_requests[("GET", "/api/v3/orderbook")] >= 2)

    async def join() -> Any:
        return await stub.GetOrderBook(request, timeout=4.0)

    joiner = asyncio.create_task(join())
    await asyncio.sleep(0.2)
    if leader_cancelled:
        leader.cancel()
    try:
        await joiner  # ALP answers after 1 s: the joiner should get the book (or an error)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED, exc  # current: hangs


@pytest.fixture
def fleet_redis() -> Iterator[RedisServer]:
    yield from running_redis()


# -- 9. fleet: the in-flight lease is shorter than the caller's deadline -> doubled order ------
@pytest.mark.slow  # a fault window of seconds
async def test_fleet_lease_shorter_than_the_callers_deadline_never_doubles(
    sandbox: Sandbox, fleet_redis: RedisServer
) -> None:
    """Member a sends with a 14 s deadline; ALP holds it 12 s. The intent's lease is a fixed
    upstream.timeout_s + 10 s (here 10.1 s), not "the first attempt's deadline plus a margin": a
    retry on member b after 10.5 s sees the sender "gone", lists, finds nothing, answers
    ORDER_NOT_PLACED and forgets the key; the next retry places a second order."""
    config = gateway_config(sandbox, cluster__redis_url=fleet_redis.url, upstream__timeout_s=0.1)
    async with Gateway(config) as ga, Gateway(config) as gb:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{ga.port}") as ca,
            grpc.aio.insecure_channel(f"127.0.0.1:{gb.port}") as cb,
        ):
            a = trading_pb2_grpc.TradingServiceStub(ca)
            b = trading_pb2_grpc.TradingServiceStub(cb)
            await warm(a)
            await warm(b)
            sandbox.faults.update({"delay_s": 12.0, "delay_path_prefix": "/trading"})
            started = time.monotonic()
            first = asyncio.create_task(place(a, order("20521", cid="lease-1"), within=14.0))
            await eventually(lambda: posts(sandbox) == 3)
            await asyncio.sleep(10.5 - (time.monotonic() - started))
            sandbox.faults.update({"delay_s": 0.0})
            retry = await place(b, order("20521", cid="lease-1"), within=3.0)
            again = None
            if retry.reason == "ORDER_NOT_PLACED":  # "verified absent: safe to retry"
                again = await place(b, order("20521", cid="lease-1"), within=3.0)
            got_first = await first
    orders = held(sandbox, "20521")
    assert len(orders) == 1, (got_first, retry, again, orders)  # never doubled
    assert retry.reason in ("OK", "ORDER_OUTCOME_UNKNOWN"), retry  # it existed at ALP later


# -- 1. reconciliation attributes another in-flight intent's order ------------------------------
async def test_ambiguous_order_is_not_answered_with_a_concurrent_intents_order(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    """B (cid b) is applied and its answer is late; A (cid a, same terms) is refused 502 before
    ALP applied it. A's reconciliation must not name B's order as A's: A's caller would hear
    "placed" for an order that does not exist (one order, two owners)."""
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    await warm(stub)
    sandbox.faults.update({"delay_after_s": 2.0, "delay_path_prefix": "/trading"})
    b = asyncio.create_task(place(stub, order("20501", cid="b"), within=8.0))
    await eventually(lambda: len(held(sandbox, "20501")) == 1)  # B applied, answer pending
    sandbox.faults.update({"error_rate": 1.0, "error_status": 502, "error_path_prefix": "/trading"})
    a = await place(stub, order("20501", cid="a"), within=8.0)
    sandbox.faults.update({"error_rate": 0.0})
    got_b = await b
    assert got_b.error is None, got_b
    orders = held(sandbox, "20501")
    assert orders == [got_b.reply.order_id]  # only B's order exists
    # A was never applied: "OK" naming B's order is a lie
    assert a.reason in ("ORDER_NOT_PLACED", "ORDER_OUTCOME_UNKNOWN"), (a, got_b)
