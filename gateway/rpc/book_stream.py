"""Order-book streams: one shared view and one encode per update per (pair, depth), many consumers.

A `BookKeeper` maintains a pair's book. Every `StreamOrderBook` (or Subscribe order-book topic) of
the same pair and depth reads it through one `BookView`: the view is the keeper's only watcher for
that depth, compares each update with what it last published once, and encodes the result once.
Consumers (`BookStream`) hold nothing but their sequence number and their Delivery.

**Sequences.** Every consumer's sequence grows by exactly one from its own first snapshot, so the
shared bytes cannot carry it. OrderBookUpdate puts `pair` (field 1) and `sequence` (field 2) before
everything else, so an update is encoded once as a *body* (fields 3-7: snapshot, resync, bids, asks,
time) and each consumer's message is `pair field + its own sequence varint + body`, wrapped for its
wire form: byte for byte what encoding the whole message per consumer gives (fields in number order),
for the price of one concatenation. Consumers that joined together share sequence numbers, so the
assembled chunk is cached per update by (wire form, sequence) and the same bytes object is offered to
all of them.

**Joining late.** A consumer that joins while the book is live starts with a snapshot of the view as
last published (its sequence 1), never of the keeper's newer book: the next shared update is the
change from that view, so it applies to the snapshot exactly.

**Falling behind.** Each consumer's Delivery is RESNAPSHOT (a Lane in Subscribe): once `limit`
updates are pending it drops them and takes a fresh snapshot of the view at its next sequence, and
`skipped` says how many it lost. The snapshot body is encoded once per view state however many
consumers need it.

**Unencodable updates** (a timestamp of 1e30): the update is dropped before anything is committed, so
the view and every sequence stay as they were and the next update carries its changes. It is counted
once per view (one upstream event that reached none of the view's consumers), logged once per view.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Final

from gateway.errors import GatewayError
from gateway.exchange.book_keeper import BookKeeper, Level
from gateway.rpc import stream_encode as enc
from gateway.rpc.delivery import Delivery, Policy
from gateway.rpc.stream_hub import DropStats
from gateway.rpc.wire import uint_field

log = logging.getLogger(__name__)

ZERO: Final = Decimal(0)


class BookStream:
    """One consumer of a BookView: its sequence, its wire form and its Delivery."""

    __slots__ = ("delivery", "kind", "sequence", "view")

    def __init__(self, view: BookView, kind: int, delivery_limit: int) -> None:
        self.view = view
        self.kind = kind  # 0: StreamOrderBookResponse.updates; else the SubscribeEvent member
        self.sequence = 0
        self.delivery = Delivery(
            f"order_book.{view.keeper.pair}",
            Policy.RESNAPSHOT,
            limit=delivery_limit,
            skipped_field=0 if kind else enc.SKIPPED_FIELD,
            resnapshot=self._resnapshot,
        )

    def next_chunk(self, body: bytes, cache: dict[tuple[int, int], bytes]) -> bytes:
        """This consumer's next update: `body` under its next sequence number, wrapped; `cache`
        holds the chunks of `body` already assembled, by (wire form, sequence)."""
        self.sequence += 1
        key = (self.kind, self.sequence)
        chunk = cache.get(key)
        if chunk is None:
            chunk = cache[key] = self.view.chunk(self.kind, self.sequence, body)
        return chunk

    def start(self) -> None:
        """The first update: a snapshot of the view (sequence 1)."""
        self.delivery.offer(self.next_chunk(*self.view.snapshot(resync=False)))

    def _resnapshot(self) -> list[bytes]:
        return [self.next_chunk(*self.view.snapshot(resync=True))]

    def status(self, state: str, topics: tuple[str, ...]) -> None:
        self.delivery.offer_status(_status_message(self.kind, enc.status_payload(state, topics)))


class BookView:
    """The view of one keeper's book at one depth, shared by its BookStreams (a BookWatcher)."""

    def __init__(self, keeper: BookKeeper, depth: int, stats: DropStats | None = None) -> None:
        self.keeper = keeper
        self.depth = depth
        self.streams: dict[BookStream, None] = {}  # insertion-ordered set
        self.bids: list[Level] = keeper.book.bids(depth)  # what was last published
        self.asks: list[Level] = keeper.book.asks(depth)
        self.unencodable = 0
        self.encodes = 0  # bodies encoded: one per update, plus snapshots (counted for tests)
        self._stats = stats
        self._head = enc.book_update_head(keeper.pair)
        # resync flag -> the snapshot body of this view state and the chunks assembled from it
        self._snapshots: dict[bool, tuple[bytes, dict[tuple[int, int], bytes]]] = {}

    def chunk(self, kind: int, sequence: int, body: bytes) -> bytes:
        """`body` as one consumer's element of the response (or SubscribeResponse) events."""
        payload = self._head + uint_field(enc.BOOK_SEQUENCE_FIELD, sequence) + body
        return enc.subscribe_chunk(kind, payload) if kind else enc.channel_chunk(payload)

    def snapshot(self, *, resync: bool) -> tuple[bytes, dict[tuple[int, int], bytes]]:
        """A snapshot body of the view as last published (no time: it is the gateway's book),
        encoded once per view state, with its chunk cache."""
        cached = self._snapshots.get(resync)
        if cached is None:
            body = self._encode(snapshot=True, resync=resync, bids=self.bids, asks=self.asks)
            cached = self._snapshots[resync] = (body, {})
        return cached

    def _encode(
        self,
        *,
        snapshot: bool,
        resync: bool,
        bids: list[Level],
        asks: list[Level],
        time_s: Decimal | None = None,
    ) -> bytes:
        self.encodes += 1
        return enc.book_update_body(
            snapshot=snapshot, resync=resync, bids=bids, asks=asks, time_s=time_s
        )

    # -- BookWatcher ---------------------------------------------------------------------------
    def on_book(self, keeper: BookKeeper, *, resync: bool, time_s: Decimal | None) -> None:
        # Called from the upstream reader for every watcher in turn: nothing may escape.
        bids = keeper.book.bids(self.depth)
        asks = keeper.book.asks(self.depth)
        try:
            if resync:
                body = self._encode(snapshot=True, resync=True, bids=bids, asks=asks, time_s=time_s)
            else:
                bid_changes = _changes(self.bids, bids)
                ask_changes = _changes(self.asks, asks)
                if not bid_changes and not ask_changes:
                    return
                body = self._encode(
                    snapshot=False, resync=False, bids=bid_changes, asks=ask_changes, time_s=time_s
                )
        except Exception as exc:  # ValueError/OverflowError from protobuf, or a bug
            self._unencodable(exc, time_s)
            return
        # Committed before anything is offered: a consumer that falls behind on this very update
        # resnapshots from the view that includes it.
        self.bids, self.asks = bids, asks
        self._snapshots = {}
        chunks: dict[tuple[int, int], bytes] = {}
        for stream in tuple(self.streams):
            stream.delivery.offer(stream.next_chunk(body, chunks))

    def on_book_status(self, state: str, topics: tuple[str, ...]) -> None:
        payload = enc.status_payload(state, topics)
        messages: dict[int, bytes] = {}
        for stream in tuple(self.streams):
            message = messages.get(stream.kind)
            if message is None:
                message = messages[stream.kind] = _status_message(stream.kind, payload)
            stream.delivery.offer_status(message)

    def on_book_refused(self, keeper: BookKeeper, error: GatewayError) -> None:
        """ALP refused the pair: every stream ends with that error once what is queued is out."""
        for stream in tuple(self.streams):
            stream.delivery.end(error)

    def _unencodable(self, exc: Exception, time_s: Decimal | None) -> None:
        self.unencodable += 1
        if self._stats is not None:
            self._stats.unencodable += 1
        if self.unencodable == 1:  # once per view; every drop is counted
            log.warning(
                "order book %s: update (time %s) cannot be encoded (%s: %s); dropped, the next "
                "update carries its changes",
                self.keeper.pair,
                str(time_s)[:40],
                type(exc).__name__,
                str(exc)[:200],
                exc_info=not isinstance(exc, ValueError | OverflowError | ArithmeticError),
            )


class BookViews:
    """The open views by (keeper, depth): a view is the keeper's watcher while it has streams."""

    def __init__(self, stats: DropStats | None = None) -> None:
        self._stats = stats
        self._views: dict[tuple[BookKeeper, int], BookView] = {}

    def open(self, keeper: BookKeeper, depth: int, kind: int, delivery_limit: int) -> BookStream:
        """A new stream of (keeper, depth); `start()` it once its delivery is in place."""
        view = self._views.get((keeper, depth))
        if view is None:
            view = self._views[(keeper, depth)] = BookView(keeper, depth, self._stats)
            keeper.watch(view)
        stream = BookStream(view, kind, delivery_limit)
        view.streams[stream] = None
        return stream

    def close(self, stream: BookStream) -> None:
        view = stream.view
        view.streams.pop(stream, None)
        key = (view.keeper, view.depth)
        if not view.streams and self._views.get(key) is view:
            del self._views[key]
            view.keeper.unwatch(view)

    def __len__(self) -> int:
        return len(self._views)


def _status_message(kind: int, payload: bytes) -> bytes:
    if kind:
        return enc.subscribe_status_message(payload)
    return enc.channel_status_message(payload)


def _changes(old: list[Level], new: list[Level]) -> list[Level]:
    """The levels that turn `old` into `new`: changed or added ones, and removed ones at 0."""
    before = dict(old)
    wanted = dict(new)
    removed = [(price, ZERO) for price in before if price not in wanted]
    return removed + [(price, amount) for price, amount in new if before.get(price) != amount]
