"""StreamService: server-streaming RPCs over shared upstream subscriptions, pre-serialised batches."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final, NamedTuple

import grpc
from alp.v3 import stream_pb2

from gateway.core.validation import validate_pair
from gateway.errors import SlowConsumer, TopicRefused, UpstreamUnavailable, ValidationError
from gateway.exchange.book_keeper import BookKeeper
from gateway.exchange.upstream import Upstream
from gateway.exchange.ws_public import TopicFeed
from gateway.rpc import stream_encode as enc
from gateway.rpc.book_stream import BookStream, BookViews
from gateway.rpc.call import ACCOUNT_HEADER, metadata_value
from gateway.rpc.caller_auth import authorize_subscribe_channel
from gateway.rpc.delivery import Delivery, Lane, Policy
from gateway.rpc.servicer_base import Context
from gateway.rpc.stream_hub import StreamHub, Target

log = logging.getLogger(__name__)

MAX_PAIRS: Final = 100
MAX_BOOK_DEPTH: Final = 20
LISTING_TIMEOUT_S: Final = 5.0  # a GET /pairs asked before a tickers stream of named pairs
SERVICE: Final = "alp.v3.StreamService"


def _pairs(values: Any, *, required: bool, field: str = "pairs") -> list[str]:
    pairs = list(values)
    if required and not pairs:
        raise ValidationError(field, "at least one pair is required")
    if len(pairs) > MAX_PAIRS:
        raise ValidationError(field, f"at most {MAX_PAIRS} pairs")
    if len(set(pairs)) != len(pairs):
        raise ValidationError(field, "pairs must be distinct")
    for index, pair in enumerate(pairs):
        validate_pair(pair, f"{field}[{index}]")
    return pairs


Want = tuple[str, str, Target]  # (hub channel, ALP topic or account, how this stream wants it)


class _Plan(NamedTuple):
    """What one stream RPC asked for, validated: its queue and what feeds it."""

    channel: str  # the Delivery's name
    policy: Policy
    wants: list[Want]
    books: Sequence[tuple[str, int]] = ()  # order books: (pair, depth)


def _per_pair(channel: str, policy: Policy, name: str, pairs: list[str]) -> _Plan:
    """One upstream topic `name.PAIR` per pair, unfiltered."""
    target = Target(0, None, conflate=policy is Policy.CONFLATE)
    return _Plan(channel, policy, [(name, f"{name}.{pair}", target) for pair in pairs])


def _rpc(
    plan_of: Callable[[StreamServicer, Any, Context], _Plan],
) -> Callable[[StreamServicer, Any, Context], AsyncIterator[bytes]]:
    """A stream RPC from the method that plans it: validation runs on the first read, inside the
    error barrier; then the plan is served (`_Serving`) and its batches yielded until it ends."""

    async def handler(self: StreamServicer, request: Any, context: Context) -> AsyncIterator[bytes]:
        async with _Serving(self, plan_of(self, request, context)) as delivery:
            async for message in delivery.messages():
                yield message

    handler.__name__ = handler.__qualname__ = plan_of.__name__
    handler.__doc__ = plan_of.__doc__
    return handler


class StreamServicer:
    """Implements StreamService with handlers that yield pre-serialised response bytes."""

    def __init__(
        self,
        hub: StreamHub,
        feed: TopicFeed,
        upstream: Upstream,
        *,
        queue_limit: int = 10_000,
        book_seed_timeout_s: float = 10.0,
    ) -> None:
        self._hub = hub
        self._feed = feed
        self._upstream = upstream
        self._queue_limit = queue_limit
        self._seed_timeout = book_seed_timeout_s
        self._keepers: dict[str, BookKeeper] = {}
        self._keeper_refs: dict[str, int] = {}
        self._keeper_lock = asyncio.Lock()
        self._views = BookViews(hub.stats)
        self._deliveries: set[Delivery] = set()
        self.active_streams = 0
        self.evictions = 0  # streams ended because the consumer was too slow
        self.ended_conflations = 0  # conflations counted by streams that have ended

    # -- the RPCs: each turns its request into a plan, `_serve` runs every plan ------------------
    @_rpc
    def StreamTickers(self, request: Any, context: Context) -> _Plan:
        pairs = _pairs(request.pairs, required=False)
        target = Target(0, frozenset(pairs) if pairs else None, conflate=True)
        return _Plan("tickers", Policy.CONFLATE, [("ticker", "ticker.*", target)])

    @_rpc
    def StreamTrades(self, request: Any, context: Context) -> _Plan:
        topics = [f"trade.{p}" for p in _pairs(request.pairs, required=False)] or ["trade.*"]
        target = Target(0, None, conflate=False)
        return _Plan("trades", Policy.LOSSLESS, [("trade", t, target) for t in topics])

    @_rpc
    def StreamBookDiffs(self, request: Any, context: Context) -> _Plan:
        pairs = _pairs(request.pairs, required=True)
        return _per_pair("book_diffs", Policy.LOSSLESS, "diff", pairs)

    @_rpc
    def StreamDepth(self, request: Any, context: Context) -> _Plan:
        pairs = _pairs(request.pairs, required=True)
        return _per_pair("depth", Policy.CONFLATE, "market_depth", pairs)

    @_rpc
    def StreamOrderUpdates(self, request: Any, context: Context) -> _Plan:
        pairs = _pairs(request.pairs, required=False)
        return self._private("order_updates", "order", context, pairs)

    @_rpc
    def StreamWalletUpdates(self, request: Any, context: Context) -> _Plan:
        currencies = list(request.currencies)
        for index, code in enumerate(currencies):
            if not (code.isascii() and code.isalnum() and code.isupper() and len(code) <= 16):
                raise ValidationError(f"currencies[{index}]", "must be an upper-case currency code")
        return self._private("wallet_updates", "wallet", context, currencies)

    @_rpc
    def StreamOrderBook(self, request: Any, context: Context) -> _Plan:
        pair = validate_pair(request.pair)
        return _Plan("order_book", Policy.RESNAPSHOT, [], [(pair, _depth(request.depth, "depth"))])

    @_rpc
    def Subscribe(self, request: Any, context: Context) -> _Plan:
        """One PER_TOPIC queue: each topic keeps the policy of its single-topic RPC (tickers and
        depth conflate per pair, books resnapshot, the rest lossless and a lossless overflow ends
        the stream RESOURCE_EXHAUSTED), all in one arrival order."""
        self._authorize_channels(request, context)
        wants, books = self._subscribe_plan(request, context)
        return _Plan("subscribe", Policy.PER_TOPIC, wants, books)

    def _private(self, channel: str, name: str, context: Context, accept: list[str]) -> _Plan:
        account = self._upstream.account(metadata_value(context, ACCOUNT_HEADER)).name
        target = Target(0, frozenset(accept) if accept else None, conflate=False)
        return _Plan(channel, Policy.LOSSLESS, [(name, account, target)])

    def _start_books(
        self, plan: _Plan, keepers: list[BookKeeper], streams: list[BookStream]
    ) -> Delivery:
        """The stream's Delivery with the plan's books started in it (synchronous, so no update
        comes between a book's snapshot and its first change).

        A RESNAPSHOT plan is one order book streamed through the book's own Delivery; in a
        PER_TOPIC (Subscribe) plan each book offers through a Lane of the stream's one queue. Every
        book says SUBSCRIBED exactly once: forwarded by the keeper, or here when ALP confirmed
        before this stream watched (a StreamOrderBook after its first snapshot)."""
        subscribe = plan.policy is Policy.PER_TOPIC
        kind = enc.KIND_ORDER_BOOK if subscribe else 0
        delivery = None if plan.policy is Policy.RESNAPSHOT else self._delivery(plan)
        for keeper, (_, depth) in zip(keepers, plan.books, strict=True):
            stream = self._views.open(keeper, depth, kind, self._queue_limit)
            streams.append(stream)
            if delivery is None:
                delivery = stream.delivery
            else:  # the book's updates go into the one queue, under the book's policy
                stream.delivery = Lane(delivery, stream.delivery)
            live = all(self._feed.is_live(topic) for topic in keeper.topics)
            # a book joined while its topics are down hears it too (then RESYNCED), as the others
            said = "subscribed" if live else "reconnecting" if keeper.reconnecting else ""
            if subscribe and said:
                stream.status(said, keeper.topics)
            stream.start()
            if said and not subscribe:  # after the snapshot: StreamOrderBook's first message
                stream.status(said, keeper.topics)
        if delivery is None:
            raise ValueError("a RESNAPSHOT plan streams one order book")
        return delivery

    def _authorize_channels(self, request: Any, context: Context) -> None:
        """Every requested channel must be granted by the table before anything is subscribed."""
        account = metadata_value(context, ACCOUNT_HEADER) or self._upstream.default_account
        for channel in dict.fromkeys(topic.channel for topic in request.topics):
            if channel not in stream_pb2.Channel.values() or channel == 0:
                continue  # unset or unknown: a malformed topic, answered INVALID_ARGUMENT below
            authorize_subscribe_channel(stream_pb2.Channel.Name(channel), account)

    def _subscribe_plan(
        self, request: Any, context: Context
    ) -> tuple[list[Want], list[tuple[str, int]]]:
        topics = list(request.topics)
        if not topics:
            raise ValidationError("topics", "at least one topic is required")
        if len(topics) > MAX_PAIRS:
            raise ValidationError("topics", f"at most {MAX_PAIRS} topics")
        wants: dict[tuple[str, str], Target] = {}
        books: list[tuple[str, int]] = []
        seen: set[tuple[int, str]] = set()
        account_name: str | None = None

        def want(name: str, upstream_topic: str, target: Target) -> None:
            # One target per (channel, topic) and stream: tickers of two pairs, or order updates
            # of two pairs, ride on one upstream channel, so their filters merge.
            key = (name, upstream_topic)
            if key in wants:
                target = _merged(wants[key], target)
            wants[key] = target

        for index, topic in enumerate(topics):
            field = f"topics[{index}]"
            key = (topic.channel, topic.pair)
            if key in seen:
                raise ValidationError(field, "duplicate topic")
            seen.add(key)
            pair = validate_pair(topic.pair, f"{field}.pair") if topic.pair else ""
            channel = topic.channel
            if channel == stream_pb2.CHANNEL_TICKERS:
                accept = frozenset({pair}) if pair else None
                want("ticker", "ticker.*", Target(enc.KIND_TICKER, accept, conflate=True))
            elif channel == stream_pb2.CHANNEL_TRADES:
                want("trade", f"trade.{pair or '*'}", Target(enc.KIND_TRADE, None, conflate=False))
            elif channel == stream_pb2.CHANNEL_BOOK_DIFFS:
                if not pair:
                    raise ValidationError(f"{field}.pair", "required for this channel")
                want("diff", f"diff.{pair}", Target(enc.KIND_BOOK_DIFF, None, conflate=False))
            elif channel == stream_pb2.CHANNEL_DEPTH:
                if not pair:
                    raise ValidationError(f"{field}.pair", "required for this channel")
                depth = Target(enc.KIND_DEPTH, None, conflate=True)
                want("market_depth", f"market_depth.{pair}", depth)
            elif channel == stream_pb2.CHANNEL_ORDER_BOOK:
                if not pair:
                    raise ValidationError(f"{field}.pair", "required for this channel")
                books.append((pair, _depth(topic.depth, f"{field}.depth")))
            elif channel in (stream_pb2.CHANNEL_ORDER_UPDATES, stream_pb2.CHANNEL_WALLET_UPDATES):
                if account_name is None:
                    account_name = self._upstream.account(
                        metadata_value(context, ACCOUNT_HEADER)
                    ).name
                name = "order" if channel == stream_pb2.CHANNEL_ORDER_UPDATES else "wallet"
                kind = enc.KIND_ORDER if name == "order" else enc.KIND_WALLET
                accept = frozenset({pair}) if pair and name == "order" else None
                want(name, account_name, Target(kind, accept, conflate=False))
            else:
                raise ValidationError(f"{field}.channel", "unknown or unspecified channel")
        if ("trade", "trade.*") in wants:  # every pair's trades: a trade.PAIR would repeat them
            wants = {k: t for k, t in wants.items() if k[0] != "trade" or k[1] == "trade.*"}
        return [(name, upstream, target) for (name, upstream), target in wants.items()], books

    # -- plumbing -------------------------------------------------------------------------------
    def _delivery(self, plan: _Plan) -> Delivery:
        skipped = enc.SKIPPED_FIELD if plan.policy is Policy.CONFLATE else 0
        if plan.policy is Policy.PER_TOPIC:
            skipped = enc.SUBSCRIBE_SKIPPED_FIELD
        return Delivery(plan.channel, plan.policy, limit=self._queue_limit, skipped_field=skipped)

    def deliveries(self) -> tuple[Delivery, ...]:
        return tuple(self._deliveries)

    def end_all(self, reason: BaseException) -> None:
        """Drain: every open stream ends with `reason` after what is already queued."""
        for delivery in tuple(self._deliveries):
            delivery.end(reason)

    async def _check_listed(self, plan: _Plan) -> None:
        """Tickers ride on `ticker.*`, which ALP never refuses: a pair it does not list would hear
        SUBSCRIBED and then nothing. Such a pair ends the stream NOT_FOUND at once, as ALP's
        refusal of its other topics does (checked against the cached GET /pairs; when ALP cannot
        be asked the stream goes ahead)."""
        for name, _, target in plan.wants:
            if name != "ticker" or target.accept is None:
                continue
            for pair in sorted(target.accept):
                deadline = time.monotonic() + LISTING_TIMEOUT_S
                try:
                    await self._upstream.pair_rules(pair, deadline=deadline)
                except KeyError:
                    raise TopicRefused(
                        f"ticker.{pair}", f"ALP lists no pair {pair}", not_found=True
                    ) from None

    async def _acquire_keeper(self, pair: str) -> BookKeeper:
        async with self._keeper_lock:
            keeper = self._keepers.get(pair)
            if keeper is None:
                keeper = BookKeeper(pair, self._feed, self._upstream)
                try:
                    await keeper.start()
                except BaseException:  # cancelled meanwhile: a keeper nobody holds must not stay
                    await keeper.stop()
                    raise
                self._keepers[pair] = keeper
                self._keeper_refs[pair] = 0
            self._keeper_refs[pair] += 1
        try:
            await keeper.wait_seeded(self._seed_timeout)
        except BaseException as exc:  # timeout or the caller went away: give the lease back
            await self._release_keeper(pair)
            if isinstance(exc, TimeoutError):
                raise UpstreamUnavailable(
                    f"no order book snapshot for {pair} within {self._seed_timeout:.0f} s"
                ) from exc
            raise
        return keeper

    async def _release_keeper(self, pair: str) -> None:
        async with self._keeper_lock:
            self._keeper_refs[pair] -= 1
            if self._keeper_refs[pair] == 0:
                keeper = self._keepers.pop(pair)
                del self._keeper_refs[pair]
                await keeper.stop()

    def keeper_count(self) -> int:
        return len(self._keepers)


class _Serving:
    """One open stream's lifetime: its books leased and started, attached to its topics, counted;
    everything given back in reverse on any exit.

    A plain class rather than a generator-based context manager: every open stream holds one, and
    generator frames are what makes idle streams expensive."""

    __slots__ = ("_delivery", "_keepers", "_plan", "_servicer", "_streams")

    def __init__(self, servicer: StreamServicer, plan: _Plan) -> None:
        self._servicer = servicer
        self._plan = plan
        self._keepers: list[BookKeeper] = []
        self._streams: list[BookStream] = []
        self._delivery: Delivery | None = None

    async def __aenter__(self) -> Delivery:
        servicer = self._servicer
        await servicer._check_listed(self._plan)
        try:
            for pair, _ in self._plan.books:
                self._keepers.append(await servicer._acquire_keeper(pair))
            delivery = servicer._start_books(self._plan, self._keepers, self._streams)
            await servicer._hub.join_all(delivery, self._plan.wants)
        except BaseException:
            await self._give_back_books()
            raise
        self._delivery = delivery
        servicer.active_streams += 1
        servicer._deliveries.add(delivery)
        return delivery

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        servicer, delivery = self._servicer, self._delivery
        assert delivery is not None  # set by __aenter__
        if exc_type is SlowConsumer:
            servicer.evictions += 1
        servicer.active_streams -= 1
        servicer.ended_conflations += delivery.conflated
        servicer._deliveries.discard(delivery)
        try:
            await servicer._hub.leave_all(delivery, self._plan.wants)
        finally:
            await self._give_back_books()

    async def _give_back_books(self) -> None:
        for stream in self._streams:
            self._servicer._views.close(stream)
        self._streams.clear()
        while self._keepers:
            await self._servicer._release_keeper(self._keepers.pop().pair)


def _merged(a: Target, b: Target) -> Target:
    """Two Subscribe topics on one upstream channel: the union of what they accept."""
    accept = None if a.accept is None or b.accept is None else a.accept | b.accept
    return Target(a.subscribe_kind, accept, a.conflate)


def _depth(value: int, field: str) -> int:
    if value == 0:
        return MAX_BOOK_DEPTH
    if not 1 <= value <= MAX_BOOK_DEPTH:
        raise ValidationError(
            field, f"must be between 1 and {MAX_BOOK_DEPTH} (0 = {MAX_BOOK_DEPTH})"
        )
    return value


def register(server: grpc.aio.Server, servicer: StreamServicer) -> None:
    """Register with response_serializer=None: handlers yield already-serialised bytes."""
    requests: dict[str, Callable[[bytes], Any]] = {
        "StreamTickers": stream_pb2.StreamTickersRequest.FromString,
        "StreamTrades": stream_pb2.StreamTradesRequest.FromString,
        "StreamBookDiffs": stream_pb2.StreamBookDiffsRequest.FromString,
        "StreamDepth": stream_pb2.StreamDepthRequest.FromString,
        "StreamOrderBook": stream_pb2.StreamOrderBookRequest.FromString,
        "StreamOrderUpdates": stream_pb2.StreamOrderUpdatesRequest.FromString,
        "StreamWalletUpdates": stream_pb2.StreamWalletUpdatesRequest.FromString,
        "Subscribe": stream_pb2.SubscribeRequest.FromString,
    }
    handlers = {
        name: grpc.unary_stream_rpc_method_handler(
            getattr(servicer, name), request_deserializer=deserializer, response_serializer=None
        )
        for name, deserializer in requests.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
