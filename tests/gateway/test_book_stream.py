"""Shared order-book views: one encode per update for every consumer of (pair, depth), each with its
own +1 sequence from its own snapshot, byte for byte what a per-consumer encode gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from alp.v3 import stream_pb2

from gateway.core import ws_events
from gateway.errors import TopicRefused
from gateway.exchange.book_keeper import BookKeeper, Level
from gateway.rpc import stream_encode as enc
from gateway.rpc.book_stream import BookStream, BookViews
from gateway.rpc.delivery import Delivery, Lane, Policy
from gateway.rpc.stream_hub import DropStats

PAIR = "BTC_USDT"
TS = Decimal("1767225600.5")


def keeper() -> BookKeeper:
    """A keeper driven through its FeedListener side only (never started: no feed, no REST)."""
    return BookKeeper(PAIR, feed=None, upstream=None)  # type: ignore[arg-type]  # never started


def depth(keeper: BookKeeper, bids: dict[str, str], asks: dict[str, str], ts: Any = TS) -> None:
    """A `market_depth` snapshot as the feed delivers it."""

    def side(levels: dict[str, str]) -> tuple[Level, ...]:
        return tuple((Decimal(p), Decimal(a)) for p, a in levels.items())

    keeper.on_event(
        f"market_depth.{PAIR}",
        ws_events.Depth(Decimal(ts), PAIR, side(asks), side(bids), None, None),
    )


def dec_book(levels: Any) -> dict[Decimal, Decimal]:
    return {Decimal(level.price): Decimal(level.amount) for level in levels}


class Reader:
    """One consumer's client: applies what it receives, checks its sequence."""

    def __init__(self, stream: BookStream) -> None:
        self.stream = stream
        self.messages: AsyncIterator[bytes] = stream.delivery.messages()
        self.sequence = 0
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.skipped = 0

    async def read(self) -> list[Any]:
        """Everything pending, as one message (statuses aside)."""
        raw = await anext(self.messages)
        message = stream_pb2.StreamOrderBookResponse.FromString(raw)
        self.skipped += message.skipped
        for update in message.updates:
            if update.resync:
                assert update.snapshot
            else:
                assert update.sequence == self.sequence + 1, (update.sequence, self.sequence)
            self.sequence = update.sequence
            if update.snapshot:
                self.bids, self.asks = dec_book(update.bids), dec_book(update.asks)
            else:
                for side, levels in ((self.bids, update.bids), (self.asks, update.asks)):
                    for price, amount in dec_book(levels).items():
                        if amount:
                            side[price] = amount
                        else:
                            side.pop(price, None)
        return list(message.updates)


def assert_holds(reader: Reader, keeper: BookKeeper, depth_: int) -> None:
    assert reader.bids == dict(keeper.book.bids(depth_))
    assert reader.asks == dict(keeper.book.asks(depth_))


async def test_consumers_share_one_encode_and_keep_their_own_sequences() -> None:
    book = keeper()
    depth(book, {"100": "1", "99": "2"}, {"101": "1"})
    views = BookViews(DropStats())
    early = [Reader(views.open(book, 20, 0, 100)) for _ in range(3)]
    for reader in early:
        reader.stream.start()
    view = early[0].stream.view
    assert all(r.stream.view is view for r in early) and book.watcher_count == 1
    depth(book, {"100": "1", "99": "3"}, {"101": "1"})
    late = Reader(views.open(book, 20, 0, 100))
    late.stream.start()
    depth(book, {"100": "1", "99": "3", "98": "1"}, {"102": "4"})

    for reader in early:
        updates = await reader.read()
        assert [(u.sequence, u.snapshot) for u in updates] == [(1, True), (2, False), (3, False)]
        assert_holds(reader, book, 20)
    updates = await late.read()
    assert [(u.sequence, u.snapshot) for u in updates] == [(1, True), (2, False)]
    assert_holds(late, book, 20)
    # one snapshot body per view state consumers joined at and one body per update, whatever the
    # number of consumers
    assert view.encodes == 2 + 2
    # the consumers that share a sequence share the very bytes of it
    assert early[0].stream.sequence == early[1].stream.sequence == 3


async def test_chunks_are_byte_for_byte_a_per_consumer_encode() -> None:
    book = keeper()
    depth(book, {"100": "1"}, {"101": "0.5"})
    views = BookViews()
    plain = views.open(book, 20, 0, 100)
    subscribe = views.open(book, 20, enc.KIND_ORDER_BOOK, 100)
    parent = Delivery("subscribe", Policy.PER_TOPIC, limit=100)
    subscribe.delivery = Lane(parent, subscribe.delivery)
    plain.start()
    subscribe.start()
    depth(book, {"100": "2"}, {"101": "0.5", "102": "1"}, ts="1767225601.25")

    bids = [(Decimal("100"), Decimal("2"))]
    asks = [(Decimal("102"), Decimal("1"))]
    expected = enc.book_update(
        PAIR, 2, snapshot=False, resync=False, bids=bids, asks=asks, time_s=Decimal("1767225601.25")
    )
    snapshot = enc.book_update(
        PAIR,
        1,
        snapshot=True,
        resync=False,
        bids=[(Decimal("100"), Decimal("1"))],
        asks=[(Decimal("101"), Decimal("0.5"))],
        time_s=None,
    )
    assert await anext(plain.delivery.messages()) == enc.channel_chunk(
        snapshot
    ) + enc.channel_chunk(expected)
    assert await anext(parent.messages()) == enc.subscribe_chunk(
        enc.KIND_ORDER_BOOK, snapshot
    ) + enc.subscribe_chunk(enc.KIND_ORDER_BOOK, expected)
    # and the hand-assembled form is what protobuf itself writes for the whole message
    whole = stream_pb2.OrderBookUpdate.FromString(expected)
    assert whole.SerializeToString() == expected


async def test_depths_get_their_own_views_and_the_last_close_unwatches() -> None:
    book = keeper()
    depth(book, {"100": "1", "99": "1"}, {"101": "1", "102": "1"})
    views = BookViews()
    one = [views.open(book, 1, 0, 10) for _ in range(2)]
    twenty = views.open(book, 20, 0, 10)
    assert len(views) == 2 and book.watcher_count == 2
    assert one[0].view is one[1].view is not twenty.view
    for stream in one:
        stream.start()
    depth(book, {"100": "1", "99": "5"}, {"101": "1", "102": "1"})  # beyond depth 1
    assert len(one[0].delivery) == 1  # only the snapshot: nothing changed within one level
    views.close(one[0])
    assert book.watcher_count == 2
    views.close(one[1])
    views.close(twenty)
    assert len(views) == 0 and book.watcher_count == 0


async def test_a_slow_consumer_resnapshots_alone_at_its_next_sequence() -> None:
    book = keeper()
    depth(book, {"100": "1"}, {"110": "1"})
    views = BookViews()
    fast = Reader(views.open(book, 20, 0, 1000))
    slow = Reader(views.open(book, 20, 0, 4))
    fast.stream.start()
    slow.stream.start()
    for step in range(2, 12):
        depth(book, {"100": str(step)}, {"110": "1"})
        await fast.read()
    updates = await slow.read()
    assert updates[0].resync and updates[0].snapshot
    assert slow.stream.delivery.resnapshots >= 1
    assert slow.sequence == slow.stream.sequence
    # every update made for it has a number: those it did not get are counted in `skipped`
    assert slow.skipped == slow.sequence - len(updates) > 0
    assert_holds(slow, book, 20)
    assert fast.sequence == 11 and fast.skipped == 0 and not fast.stream.delivery.resnapshots
    assert_holds(fast, book, 20)


async def test_an_unencodable_update_is_counted_once_per_view_and_leaves_no_gap() -> None:
    book = keeper()
    depth(book, {"100": "1"}, {"110": "1"})
    stats = DropStats()
    views = BookViews(stats)
    readers = [Reader(views.open(book, 20, 0, 100)) for _ in range(3)]
    for reader in readers:
        reader.stream.start()
    depth(book, {"100": "1", "99": "1"}, {"110": "1"}, ts="1e30")  # no Timestamp holds it
    assert stats.unencodable == 1
    late = Reader(views.open(book, 20, 0, 100))
    late.stream.start()  # the view as last published: without 99
    depth(book, {"100": "1", "98": "1"}, {"110": "1"})
    for reader in [*readers, late]:
        updates = await reader.read()
        assert [u.sequence for u in updates] == [1, 2]
        assert_holds(reader, book, 20)  # 99 came and went unseen


async def test_statuses_and_refusals_reach_every_consumer() -> None:
    book = keeper()
    depth(book, {"100": "1"}, {"110": "1"})
    views = BookViews()
    streams = [views.open(book, 20, 0, 10), views.open(book, 5, 0, 10)]
    for stream in streams:
        stream.start()
    book.on_status("reconnecting", book.topics)
    for stream in streams:
        messages = stream.delivery.messages()
        await anext(messages)  # the snapshot
        status = stream_pb2.StreamOrderBookResponse.FromString(await anext(messages)).status
        assert status.state == stream_pb2.STREAM_STATE_RECONNECTING
    refusal = TopicRefused(f"diff.{PAIR}", "Topic does not exist", not_found=True)
    book.on_rejected(f"diff.{PAIR}", refusal)
    for stream in streams:
        with pytest.raises(TopicRefused):
            await anext(stream.delivery.messages())
