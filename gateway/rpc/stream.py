"""StreamService: server-streaming RPCs over shared upstream subscriptions, pre-serialised batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any, Final

import grpc
from alp.v3 import stream_pb2

from gateway.core.validation import validate_pair
from gateway.errors import GatewayError, SlowConsumer, UpstreamUnavailable, ValidationError
from gateway.exchange.book_keeper import BookKeeper, Level
from gateway.exchange.upstream import Upstream
from gateway.exchange.ws_public import PublicFeed
from gateway.rpc import stream_encode as enc
from gateway.rpc.call import ACCOUNT_HEADER, metadata_value
from gateway.rpc.caller_auth import authorize_subscribe_channel
from gateway.rpc.delivery import Delivery, Lane, Policy
from gateway.rpc.servicer_base import Context
from gateway.rpc.stream_hub import DropStats, StreamHub, Target

log = logging.getLogger(__name__)

ZERO: Final = Decimal(0)
MAX_PAIRS: Final = 100
MAX_BOOK_DEPTH: Final = 20
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


class BookStream:
    """One consumer of a maintained book: its own depth view and its own +1 sequence.

    `view` is what the consumer holds. An update is encoded before anything is committed, so one
    that cannot be encoded (a timestamp of 1e30) is dropped and counted with the view and the
    sequence untouched: the next update carries its changes and the sequence has no gap. Each
    consumer's updates are its own, so a dropped update counts once per consumer."""

    def __init__(
        self,
        keeper: BookKeeper,
        depth: int,
        delivery_limit: int,
        kind: int,
        stats: DropStats | None = None,
    ) -> None:
        self.keeper = keeper
        self.depth = depth
        self.kind = kind
        self.view: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
        self.sequence = 0
        self.unencodable = 0
        self._stats = stats
        self.delivery = Delivery(
            f"order_book.{keeper.pair}",
            Policy.RESNAPSHOT,
            limit=delivery_limit,
            skipped_field=0 if kind else enc.SKIPPED_FIELD,
            resnapshot=lambda: [self._snapshot(resync=True, time_s=None)],
        )

    def _wrap(self, payload: bytes) -> bytes:
        return enc.subscribe_chunk(self.kind, payload) if self.kind else enc.channel_chunk(payload)

    def _encode(
        self,
        *,
        snapshot: bool,
        resync: bool,
        bids: list[Level],
        asks: list[Level],
        time_s: Decimal | None,
    ) -> bytes:
        """The next update's bytes (sequence + 1); raises without changing anything."""
        return self._wrap(
            enc.book_update(
                self.keeper.pair,
                self.sequence + 1,
                snapshot=snapshot,
                resync=resync,
                bids=bids,
                asks=asks,
                time_s=time_s,
            )
        )

    def _snapshot(self, *, resync: bool, time_s: Decimal | None) -> bytes:
        bids = self.keeper.book.bids(self.depth)
        asks = self.keeper.book.asks(self.depth)
        chunk = self._encode(snapshot=True, resync=resync, bids=bids, asks=asks, time_s=time_s)
        self.view = (dict(bids), dict(asks))
        self.sequence += 1
        return chunk

    def start(self) -> None:
        self.delivery.offer(self._snapshot(resync=False, time_s=None))

    def on_book(self, keeper: BookKeeper, *, resync: bool, time_s: Decimal | None) -> None:
        # Called from the upstream reader for every watcher in turn: nothing may escape.
        try:
            if resync:
                chunk: bytes | None = self._snapshot(resync=True, time_s=time_s)
            else:
                chunk = self._changes(time_s)
        except Exception as exc:  # ValueError/OverflowError from protobuf, or a bug
            self._unencodable(exc, time_s)
            return
        if chunk is not None:
            self.delivery.offer(chunk)

    def _changes(self, time_s: Decimal | None) -> bytes | None:
        """The update from the view to the keeper's book, or None when nothing changed."""
        bids = self.keeper.book.bids(self.depth)
        asks = self.keeper.book.asks(self.depth)
        bid_changes = _changes(self.view[0], bids)
        ask_changes = _changes(self.view[1], asks)
        if not bid_changes and not ask_changes:
            return None
        chunk = self._encode(
            snapshot=False, resync=False, bids=bid_changes, asks=ask_changes, time_s=time_s
        )
        self.view = (dict(bids), dict(asks))
        self.sequence += 1
        return chunk

    def _unencodable(self, exc: Exception, time_s: Decimal | None) -> None:
        self.unencodable += 1
        if self._stats is not None:
            self._stats.unencodable += 1
        if self.unencodable == 1:  # once per stream; every drop is counted
            log.warning(
                "order book %s: update (time %s) cannot be encoded (%s: %s); dropped, the next "
                "update carries its changes",
                self.keeper.pair,
                str(time_s)[:40],
                type(exc).__name__,
                str(exc)[:200],
                exc_info=not isinstance(exc, ValueError | OverflowError | ArithmeticError),
            )

    def on_book_status(self, state: str, topics: tuple[str, ...]) -> None:
        payload = enc.status_payload(state, topics)
        if self.kind:
            self.delivery.offer_status(enc.subscribe_status_message(payload))
        else:
            self.delivery.offer_status(enc.channel_status_message(payload))

    def on_book_refused(self, keeper: BookKeeper, error: GatewayError) -> None:
        """ALP refused the pair: the stream ends with that error once what is queued is out."""
        self.delivery.end(error)


def _changes(old: dict[Decimal, Decimal], new: list[Level]) -> list[Level]:
    """The levels that turn `old` into `new`: changed or added ones, and removed ones at 0."""
    wanted = dict(new)
    removed = [(price, ZERO) for price in old if price not in wanted]
    return removed + [(price, amount) for price, amount in new if old.get(price) != amount]


class StreamServicer:
    """Implements StreamService with handlers that yield pre-serialised response bytes."""

    def __init__(
        self,
        hub: StreamHub,
        feed: PublicFeed,
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
        self._deliveries: set[Delivery] = set()
        self.active_streams = 0
        self.evictions = 0  # streams ended because the consumer was too slow
        self.ended_conflations = 0  # conflations counted by streams that have ended

    # -- per-channel RPCs ----------------------------------------------------------------------
    async def StreamTickers(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        pairs = _pairs(request.pairs, required=False)
        accept = frozenset(pairs) if pairs else None
        delivery = self._delivery("tickers", Policy.CONFLATE)
        target = Target(0, accept, conflate=True)
        async with self._serving(delivery, [("ticker", "ticker.*", target)]):
            async for message in delivery.messages():
                yield message

    async def StreamTrades(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        pairs = _pairs(request.pairs, required=False)
        delivery = self._delivery("trades", Policy.LOSSLESS)
        target = Target(0, None, conflate=False)
        topics = [f"trade.{p}" for p in pairs] or ["trade.*"]
        async with self._serving(delivery, [("trade", t, target) for t in topics]):
            async for message in delivery.messages():
                yield message

    async def StreamBookDiffs(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        pairs = _pairs(request.pairs, required=True)
        delivery = self._delivery("book_diffs", Policy.LOSSLESS)
        target = Target(0, None, conflate=False)
        wants = [("diff", f"diff.{p}", target) for p in pairs]
        async with self._serving(delivery, wants):
            async for message in delivery.messages():
                yield message

    async def StreamDepth(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        pairs = _pairs(request.pairs, required=True)
        delivery = self._delivery("depth", Policy.CONFLATE)
        target = Target(0, None, conflate=True)
        wants = [("market_depth", f"market_depth.{p}", target) for p in pairs]
        async with self._serving(delivery, wants):
            async for message in delivery.messages():
                yield message

    async def StreamOrderUpdates(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        pairs = _pairs(request.pairs, required=False)
        account = self._upstream.account(metadata_value(context, ACCOUNT_HEADER)).name
        delivery = self._delivery("order_updates", Policy.LOSSLESS)
        target = Target(0, frozenset(pairs) if pairs else None, conflate=False)
        async with self._serving(delivery, [("order", account, target)]):
            async for message in delivery.messages():
                yield message

    async def StreamWalletUpdates(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        currencies = list(request.currencies)
        for index, code in enumerate(currencies):
            if not (code.isascii() and code.isalnum() and code.isupper() and len(code) <= 16):
                raise ValidationError(f"currencies[{index}]", "must be an upper-case currency code")
        account = self._upstream.account(metadata_value(context, ACCOUNT_HEADER)).name
        delivery = self._delivery("wallet_updates", Policy.LOSSLESS)
        target = Target(0, frozenset(currencies) if currencies else None, conflate=False)
        async with self._serving(delivery, [("wallet", account, target)]):
            async for message in delivery.messages():
                yield message

    async def StreamOrderBook(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        pair = validate_pair(request.pair)
        depth = _depth(request.depth, "depth")
        async with self._book(pair) as keeper:
            stream = BookStream(keeper, depth, self._queue_limit, kind=0, stats=self._hub.stats)
            keeper.watch(stream)
            try:
                stream.start()
                async with self._serving(stream.delivery, []):
                    async for message in stream.delivery.messages():
                        yield message
            finally:
                keeper.unwatch(stream)

    # -- Subscribe ------------------------------------------------------------------------------
    async def Subscribe(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        """One PER_TOPIC queue: each topic keeps the policy of its single-topic RPC (tickers and
        depth conflate per pair, books resnapshot, the rest lossless and a lossless overflow ends
        the stream RESOURCE_EXHAUSTED), all in one arrival order."""
        self._authorize_channels(request, context)
        wants, books = self._subscribe_plan(request, context)
        delivery = self._delivery("subscribe", Policy.PER_TOPIC)
        async with contextlib.AsyncExitStack() as stack:
            keepers = [(await stack.enter_async_context(self._book(p)), d) for p, d in books]
            # No await from here on until every book is started: a book's first update is its
            # snapshot, and its SUBSCRIBED is told exactly once (forwarded by the keeper, or
            # here when ALP confirmed before this stream watched).
            for keeper, depth in keepers:
                stream = BookStream(
                    keeper,
                    depth,
                    self._queue_limit,
                    kind=enc.KIND_ORDER_BOOK,
                    stats=self._hub.stats,
                )
                # the book's updates go into the subscriber's one queue, under the book's policy
                stream.delivery = Lane(delivery, stream.delivery)
                keeper.watch(stream)
                stack.callback(keeper.unwatch, stream)
                if all(self._feed.is_live(topic) for topic in keeper.topics):
                    stream.on_book_status("subscribed", keeper.topics)
                stream.start()
            async with self._serving(delivery, wants):
                async for message in delivery.messages():
                    yield message

    def _authorize_channels(self, request: Any, context: Context) -> None:
        """Every requested channel must be granted by the table before anything is subscribed."""
        account = metadata_value(context, ACCOUNT_HEADER) or self._upstream.default_account
        for channel in dict.fromkeys(topic.channel for topic in request.topics):
            if channel == stream_pb2.CHANNEL_UNSPECIFIED:
                continue  # a malformed topic, not a permission question: INVALID_ARGUMENT below
            try:
                name = stream_pb2.Channel.Name(channel)
            except ValueError:
                name = f"#{channel}"  # not in this proto, so not in the table: denied
            authorize_subscribe_channel(name, account)

    def _subscribe_plan(
        self, request: Any, context: Context
    ) -> tuple[list[tuple[str, str, Target]], list[tuple[str, int]]]:
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
    def _delivery(self, channel: str, policy: Policy) -> Delivery:
        skipped = enc.SKIPPED_FIELD if policy is Policy.CONFLATE else 0
        if policy is Policy.PER_TOPIC:
            skipped = enc.SUBSCRIBE_SKIPPED_FIELD
        return Delivery(channel, policy, limit=self._queue_limit, skipped_field=skipped)

    def _serving(self, delivery: Delivery, wants: list[tuple[str, str, Target]]) -> _Serving:
        return _Serving(self, delivery, wants)

    def deliveries(self) -> tuple[Delivery, ...]:
        return tuple(self._deliveries)

    def end_all(self, reason: BaseException) -> None:
        """Drain: every open stream ends with `reason` after what is already queued."""
        for delivery in tuple(self._deliveries):
            delivery.end(reason)

    def _book(self, pair: str) -> Any:
        return _KeeperLease(self, pair)

    async def _acquire_keeper(self, pair: str) -> BookKeeper:
        async with self._keeper_lock:
            keeper = self._keepers.get(pair)
            if keeper is None:
                keeper = BookKeeper(pair, self._feed, self._upstream)
                self._keepers[pair] = keeper
                self._keeper_refs[pair] = 0
                await keeper.start()
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
    """One open stream's lifetime: attached to its topics, counted, detached on any exit.

    A plain class rather than a generator-based context manager: every open stream holds one, and
    generator frames are what makes idle streams expensive."""

    __slots__ = ("_delivery", "_servicer", "_wants")

    def __init__(
        self, servicer: StreamServicer, delivery: Delivery, wants: list[tuple[str, str, Target]]
    ) -> None:
        self._servicer = servicer
        self._delivery = delivery
        self._wants = wants

    async def __aenter__(self) -> None:
        servicer = self._servicer
        await servicer._hub.join_all(self._delivery, self._wants)
        servicer.active_streams += 1
        servicer._deliveries.add(self._delivery)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        servicer = self._servicer
        if exc_type is SlowConsumer:
            servicer.evictions += 1
        servicer.active_streams -= 1
        servicer.ended_conflations += self._delivery.conflated
        servicer._deliveries.discard(self._delivery)
        await servicer._hub.leave_all(self._delivery, self._wants)


class _KeeperLease:
    def __init__(self, servicer: StreamServicer, pair: str) -> None:
        self._servicer = servicer
        self._pair = pair

    async def __aenter__(self) -> BookKeeper:
        return await self._servicer._acquire_keeper(self._pair)

    async def __aexit__(self, *exc: object) -> None:
        await self._servicer._release_keeper(self._pair)


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
