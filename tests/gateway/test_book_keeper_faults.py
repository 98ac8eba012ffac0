"""BookKeeper resnapshots survive every failure: client-side rate limits, crossed REST snapshots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from gateway.app import Gateway
from gateway.exchange.book_keeper import BookKeeper
from gateway.exchange.rest_client import RestClient
from gateway.exchange.upstream import Upstream
from gateway.sandbox import Sandbox
from tests.gateway.test_streams import eventually

PAIR = "BTC_USDT"


class Watcher:
    """Records what a BookKeeper publishes; `resynced` is set by every resync publication."""

    def __init__(self) -> None:
        self.resyncs = 0
        self.resynced = asyncio.Event()

    def on_book(self, keeper: BookKeeper, *, resync: bool, time_s: Decimal | None) -> None:
        if resync:
            self.resyncs += 1
            self.resynced.set()

    def on_book_status(self, state: str, topics: tuple[str, ...]) -> None:
        pass


def keeper_tasks() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").startswith("BookKeeper.")
    ]


async def settled_task_count(gateway: Gateway) -> int:
    """Tasks once the feed holds no topic (lingering unsubscribes and closes are done)."""
    feed = gateway.public_feed
    assert feed is not None
    await eventually(lambda: feed.listener_count() == 0 and not feed.connections(), within=5)
    await asyncio.sleep(0)
    return len(asyncio.all_tasks())


async def tasks_return_to(count: int) -> None:
    """Closing sockets finish their handshakes in their own time; a leak never gets back down."""
    await eventually(lambda: len(asyncio.all_tasks()) <= count, within=10)
    assert len(asyncio.all_tasks()) == count


async def baseline_task_count(gateway: Gateway, upstream: Upstream) -> int:
    """Tasks after one clean keeper lifetime: long-lived owners that a first use starts (the feed's
    linger loop, a keep-alive HTTP connection and its server-side handler) are then counted."""
    assert gateway.public_feed is not None
    keeper = BookKeeper(PAIR, gateway.public_feed, upstream)
    await keeper.start()
    await keeper.wait_seeded(5)
    await keeper.stop()
    return await settled_task_count(gateway)


async def resnapshot_after_reconnect(sandbox: Sandbox) -> None:
    """A dropped socket makes the feed resubscribe; RESYNCED makes the keeper resnapshot."""
    dropped = await sandbox.drop_ws_connections()
    assert dropped >= 1


async def test_rate_limited_resnapshot_retries_until_the_book_recovers(
    gateway: Gateway, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.exchange.book_keeper")
    assert gateway.public_feed is not None and gateway.upstream is not None
    limiter = gateway.upstream.client.limiter
    before = await baseline_task_count(gateway, gateway.upstream)
    # Shorter than the sandbox's Retry-After of 1 s: after a 429 the client-side limiter refuses
    # the keeper's next attempts with RateLimited instead of waiting, as it does for any caller.
    # Retries within 0.5 s: each 429's pause is then still running, so RateLimited comes every time.
    keeper = BookKeeper(
        PAIR, gateway.public_feed, gateway.upstream, request_timeout_s=0.5, retry_cap_s=0.5
    )
    watcher = Watcher()
    keeper.watch(watcher)
    await keeper.start()
    await keeper.wait_seeded(5)
    assert keeper.stats.seeds == 1

    sandbox.faults.update(
        {"error_rate": 1.0, "error_status": 429, "error_path_prefix": "/orderbook"}
    )
    rejections = limiter.rejections
    await resnapshot_after_reconnect(sandbox)
    await eventually(lambda: limiter.rejections >= rejections + 2, within=10)
    assert not watcher.resynced.is_set()

    sandbox.faults.update({"error_rate": 0.0})
    await asyncio.wait_for(watcher.resynced.wait(), 10)
    assert keeper.stats.seeds == 2
    assert len(keeper_tasks()) == 0  # the resnapshot finished; nothing keeps running
    logged = [r.getMessage() for r in caplog.records if r.name == "gateway.exchange.book_keeper"]
    assert any(PAIR in m and "RateLimited" in m for m in logged), logged

    await keeper.stop()
    assert keeper_tasks() == []
    await tasks_return_to(before)


class CrossingProxy:
    """GET /orderbook in front of the sandbox, answering a crossed book while `crossed` > 0."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.crossed = 0
        self.served_crossed = 0
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def orderbook(self, request: web.Request) -> web.StreamResponse:
        if self.crossed > 0:
            self.crossed -= 1
            self.served_crossed += 1
            return web.Response(
                text='{"buy":[{"amount":1,"price":30100}],"sell":[{"amount":1,"price":30000}]}',
                content_type="application/json",
            )
        assert self._session is not None
        async with self._session.get(
            f"{self.sandbox.rest_url}/orderbook",
            params=request.query,
            headers={"Accept": "application/json"},
        ) as upstream:
            body = await upstream.read()
            return web.Response(body=body, status=upstream.status, content_type="application/json")

    async def __aenter__(self) -> CrossingProxy:
        app = web.Application()
        app.router.add_get("/api/v3/orderbook", self.orderbook)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/api/v3"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()


@pytest.fixture
async def proxy(sandbox: Sandbox) -> AsyncIterator[CrossingProxy]:
    async with CrossingProxy(sandbox) as running:
        yield running


async def test_crossed_snapshot_is_refused_and_retried_until_a_good_one_lands(
    gateway: Gateway, sandbox: Sandbox, proxy: CrossingProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.exchange.book_keeper")
    assert gateway.public_feed is not None
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(RestClient(proxy.url, session), {}, "")
        before = await baseline_task_count(gateway, upstream)
        keeper = BookKeeper(PAIR, gateway.public_feed, upstream)
        watcher = Watcher()
        keeper.watch(watcher)
        await keeper.start()
        await keeper.wait_seeded(5)

        proxy.crossed = 3
        await resnapshot_after_reconnect(sandbox)
        await asyncio.wait_for(watcher.resynced.wait(), 15)
        assert proxy.served_crossed == 3 and proxy.crossed == 0
        assert keeper.stats.seeds == 2
        assert keeper.stats.reasons.count("snapshot is crossed") == 3
        bids, asks = keeper.book.bids(), keeper.book.asks()
        assert not (bids and asks and bids[0][0] >= asks[0][0])  # the crossed book never landed
        logged = [
            r.getMessage() for r in caplog.records if r.name == "gateway.exchange.book_keeper"
        ]
        assert any(PAIR in m and "BookInconsistent" in m for m in logged), logged

        await keeper.stop()
        assert keeper_tasks() == []
        await tasks_return_to(before)


async def test_stop_during_backoff_cancels_and_awaits_the_resnapshot(
    gateway: Gateway, sandbox: Sandbox, proxy: CrossingProxy
) -> None:
    assert gateway.public_feed is not None
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(RestClient(proxy.url, session), {}, "")
        before = await baseline_task_count(gateway, upstream)
        keeper = BookKeeper(PAIR, gateway.public_feed, upstream)
        proxy.crossed = 10**6  # never a good snapshot
        await keeper.start()
        await eventually(lambda: proxy.served_crossed >= 2, within=10)
        assert not keeper.seeded
        assert len(keeper_tasks()) == 1
        await keeper.stop()
        assert keeper_tasks() == []  # cancelled and awaited by stop(), not left to finish later
        await tasks_return_to(before)
