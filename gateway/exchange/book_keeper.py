"""BookKeeper: the gateway's order book of one pair — REST seed, WS depth snapshots and diffs, resync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, TypeGuard

from gateway.core import rest_parsing, rest_requests, ws_events
from gateway.core.backoff import backoff_delay
from gateway.core.orderbook import BookInconsistent, OrderBook
from gateway.errors import GatewayError, RateLimited, UpstreamHttpError
from gateway.exchange.upstream import Upstream
from gateway.exchange.ws_public import RECONNECTING, RESYNCED, TopicFeed

log = logging.getLogger(__name__)

Level = tuple[Decimal, Decimal]
ALP_BOOK_LEVELS = 20  # REST /orderbook and `p` frames carry at most this many levels a side
# 4xx answers to GET /orderbook that say nothing about the pair: retried like any failure. Every
# other 4xx is ALP's verdict on the pair (400 BAD_REQUEST "unknown pair" on the live server).
TRANSIENT_HTTP = frozenset({401, 403, 408, 429})
TRANSIENT_ALP_CODES = frozenset({"3003", "3004"})  # overloaded / internal error in a 4xx body


class BookWatcher(Protocol):
    def on_book(self, keeper: BookKeeper, *, resync: bool, time_s: Decimal | None) -> None: ...

    def on_book_status(self, state: str, topics: tuple[str, ...]) -> None: ...

    def on_book_refused(self, keeper: BookKeeper, error: GatewayError) -> None:
        """ALP refused the pair: the keeper publishes nothing more; the watcher should end."""


@dataclass
class BookStats:
    seeds: int = 0
    depth_snapshots: int = 0
    diffs_applied: int = 0
    diffs_ignored_deep: int = 0
    inconsistencies: int = 0
    reasons: list[str] = field(default_factory=list)


class BookKeeper:
    """Maintains one pair's book for any number of watchers; never publishes a crossed book.

    Seeded from GET /orderbook (ALP sends no depth snapshot on subscribe), replaced by every
    `market_depth` snapshot, updated by `diff` frames. A diff that does not fit (negative size,
    missing level, crossed result) or any reconnect triggers a resnapshot from REST, and watchers
    are told it is a resync. Sources carry at most 20 levels, so the book knows nothing beyond its
    worst level once it was truncated: diffs out there are ignored rather than guessed.

    When ALP refuses the pair (its WebSocket says the topic does not exist, or GET /orderbook
    answers a 4xx that is not about rate, credentials or time) the keeper is `refused`: it stops
    fetching, and every watcher and every `wait_seeded` gets the refusal at once.
    """

    def __init__(
        self,
        pair: str,
        feed: TopicFeed,
        upstream: Upstream,
        *,
        request_timeout_s: float = 5.0,
        retry_base_s: float = 0.2,
        retry_cap_s: float = 5.0,
        verdict_grace_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.pair = pair
        self.book = OrderBook(pair)
        self._feed = feed
        self._upstream = upstream
        self._timeout = request_timeout_s
        self._retry_base = retry_base_s
        self._retry_cap = retry_cap_s
        self._clock = clock
        self._rand = rand
        self._verdict_grace = verdict_grace_s
        self._watchers: set[BookWatcher] = set()
        self._seeded = asyncio.Event()
        self._settled = asyncio.Event()  # seeded or refused: what `wait_seeded` waits for
        self._topics_answered = asyncio.Event()  # every topic acknowledged or refused upstream
        self.refusal: GatewayError | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._truncated_bids = False
        self._truncated_asks = False
        self._resyncing = False
        self.stats = BookStats()
        self.topics = (f"market_depth.{pair}", f"diff.{pair}")
        self.reconnecting = False  # watchers heard RECONNECTING and not yet that it is back
        self._told_live = False  # watchers heard SUBSCRIBED or RESYNCED (and nothing after)

    @property
    def seeded(self) -> bool:
        return self._seeded.is_set()

    async def start(self) -> None:
        """Subscribe and fetch the seed in the background: callers wait with `wait_seeded`, so an
        unreachable ALP never holds anyone else up."""
        for topic in self.topics:
            await self._feed.add(topic, self)
        self._schedule_resnapshot(resync=False)

    async def stop(self) -> None:
        self._stopped = True  # a RESYNCED arriving while we wait below must not start a new task
        task, self._resync_task = self._resync_task, None
        if task is not None:
            task.cancel()
            # Awaited so that nothing of this keeper outlives stop().
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for topic in self.topics:
            await self._feed.remove(topic, self)

    def watch(self, watcher: BookWatcher) -> None:
        self._watchers.add(watcher)

    def unwatch(self, watcher: BookWatcher) -> None:
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    async def wait_seeded(self, within_s: float) -> None:
        """Until the first snapshot landed; raises the refusal if ALP refused the pair."""
        if self.refusal is None:
            async with asyncio.timeout(within_s):  # (wait_for can swallow a cancel on 3.11)
                await self._settled.wait()
        if self.refusal is not None:
            raise self.refusal

    # -- FeedListener ----------------------------------------------------------------------------
    def on_event(self, topic: str, event: ws_events.WsEvent) -> None:
        if self._resyncing:
            return  # the REST snapshot being fetched supersedes frames in flight
        if isinstance(event, ws_events.Depth):
            self.stats.depth_snapshots += 1
            self._truncated_bids = len(event.bids) >= ALP_BOOK_LEVELS
            self._truncated_asks = len(event.asks) >= ALP_BOOK_LEVELS
            try:
                changes = self.book.apply_snapshot(event.bids, event.asks)
            except BookInconsistent as exc:
                self._inconsistent(exc.reason)
                return
            if changes:
                self._publish(resync=False, time_s=event.ts)
        elif isinstance(event, ws_events.BookDiff):
            bids = self._within_known(event.bids, bid_side=True)
            asks = self._within_known(event.asks, bid_side=False)
            if not bids and not asks:
                return
            try:
                changes = self.book.apply_diff(bids, asks)
            except BookInconsistent as exc:
                self._inconsistent(exc.reason)
                return
            self.stats.diffs_applied += 1
            if changes:
                self._publish(resync=False, time_s=event.ts)

    def on_status(self, state: str, topics: tuple[str, ...]) -> None:
        """The book's two topics may sit on two upstream sockets, each reporting on its own: the
        watchers hear one RECONNECTING at the first loss and one SUBSCRIBED or RESYNCED once both
        topics are live again, naming the book's topics."""
        if self.refusal is not None:
            return  # the watchers were told the stream is over
        if state == RECONNECTING:
            self._resyncing = True
            self._topics_answered.clear()  # ALP answers the resubscription afresh
            if not self.reconnecting:
                self.reconnecting = True
                self._tell(RECONNECTING)
            return
        if not all(self._feed.is_live(t) for t in self.topics):
            return  # the other topic's answer is still to come
        self._topics_answered.set()
        if self.reconnecting:  # diffs may be missing: a fresh snapshot, flagged resync
            self.reconnecting = False
            self._tell(RESYNCED)
            self._schedule_resnapshot()
            return
        if not self._told_live:
            self._tell(state)
        if state == RESYNCED:
            self._schedule_resnapshot()

    def _tell(self, state: str) -> None:
        self._told_live = state != RECONNECTING
        for watcher in tuple(self._watchers):
            watcher.on_book_status(state, self.topics)

    def on_rejected(self, topic: str, error: GatewayError) -> None:
        """ALP refused one of the pair's topics: no book can be kept, so the watchers end now."""
        log.warning("book %s: upstream rejected %s: %s", self.pair, topic, error)
        self._topics_answered.set()
        self._refuse(error)

    # -- internals -------------------------------------------------------------------------------
    def _within_known(self, deltas: tuple[Level, ...], *, bid_side: bool) -> list[Level]:
        truncated = self._truncated_bids if bid_side else self._truncated_asks
        levels = self.book.bids() if bid_side else self.book.asks()
        if not truncated or not levels:
            return list(deltas)
        worst = levels[-1][0]
        kept = [
            (price, delta)
            for price, delta in deltas
            if (price >= worst if bid_side else price <= worst)
        ]
        self.stats.diffs_ignored_deep += len(deltas) - len(kept)
        return kept

    def _record_inconsistency(self, reason: str) -> None:
        self.stats.inconsistencies += 1
        self.stats.reasons = [*self.stats.reasons[-9:], reason]

    def _inconsistent(self, reason: str) -> None:
        self._record_inconsistency(reason)
        log.warning("book %s inconsistent (%s); resnapshotting", self.pair, reason)
        self._schedule_resnapshot()

    def _refuse(self, error: GatewayError) -> None:
        if self.refusal is not None:
            return
        self.refusal = error
        self._resyncing = True  # frames still in flight are ignored
        task = self._resync_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # kept in _resync_task: stop() awaits it
        self._settled.set()
        for watcher in tuple(self._watchers):
            watcher.on_book_refused(self, error)

    async def _refuse_after_seed(self, error: UpstreamHttpError) -> None:
        """GET /orderbook refused the pair. ALP's WebSocket says the same more precisely ("Topic
        does not exist"), and usually a moment later: give it that moment, bounded, unless the
        topics are already acknowledged (then the REST answer is all there is)."""
        if not all(self._feed.is_live(t) for t in self.topics):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._verdict_grace):
                    await self._topics_answered.wait()
        self._refuse(error)  # a no-op when on_rejected came first

    def _schedule_resnapshot(self, *, resync: bool = True) -> None:
        self._resyncing = True
        if self._stopped or self.refusal is not None:
            return
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.get_running_loop().create_task(
                self._resnapshot(resync=resync)
            )

    async def _resnapshot(self, *, resync: bool) -> None:
        """Until a good snapshot lands. Every failure is retried with backoff: a task that died here
        would leave the book frozen (frames ignored while resyncing) until the next reconnect."""
        self._resyncing = True
        attempt = 0
        while True:
            try:
                bids, asks = await self._fetch_snapshot()
                break
            except Exception as exc:  # not CancelledError (a BaseException): stop() must win
                if _is_verdict(exc):
                    log.warning("book %s: ALP refused the snapshot: %s", self.pair, exc)
                    await self._refuse_after_seed(exc)
                    return
                delay = backoff_delay(
                    attempt, base=self._retry_base, cap=self._retry_cap, rand=self._rand()
                )
                if isinstance(exc, RateLimited):  # sooner only earns another refusal
                    delay = max(delay, exc.retry_after)
                attempt += 1
                if isinstance(exc, BookInconsistent):
                    self._record_inconsistency(exc.reason)
                log.warning(
                    "book %s: snapshot attempt %d failed (%s: %s); retrying in %.2f s",
                    self.pair,
                    attempt,
                    type(exc).__name__,
                    exc,
                    delay,
                    # expected failures carry their reason; anything else is a bug: keep the trace
                    exc_info=not isinstance(exc, GatewayError | BookInconsistent),
                )
                await asyncio.sleep(delay)
        self._truncated_bids = len(bids) >= ALP_BOOK_LEVELS
        self._truncated_asks = len(asks) >= ALP_BOOK_LEVELS
        self.stats.seeds += 1
        self._resyncing = False
        self._seeded.set()
        self._settled.set()
        self._publish(resync=resync, time_s=None)

    async def _fetch_snapshot(self) -> tuple[list[Level], list[Level]]:
        """GET /orderbook into the book; raises (book unchanged) when it cannot or it is crossed."""
        # Straight to the client: a resync must not be answered from the micro-cache.
        payload = await self._upstream.client.call(
            rest_requests.order_book(self.pair),
            deadline=self._clock() + self._timeout,
        )
        snapshot = rest_parsing.parse_order_book(payload)
        bids = [(level.price, level.amount) for level in snapshot.buy]
        asks = [(level.price, level.amount) for level in snapshot.sell]
        self.book.reset(bids, asks)  # validates before it changes anything
        return bids, asks

    def _publish(self, *, resync: bool, time_s: Decimal | None) -> None:
        for watcher in tuple(self._watchers):
            watcher.on_book(self, resync=resync, time_s=time_s)


def _is_verdict(exc: Exception) -> TypeGuard[UpstreamHttpError]:
    """A 4xx from GET /orderbook that is ALP's answer about the pair, not a passing condition."""
    return (
        isinstance(exc, UpstreamHttpError)
        and 400 <= exc.http_status < 500
        and exc.http_status not in TRANSIENT_HTTP
        and exc.code not in TRANSIENT_ALP_CODES
    )
