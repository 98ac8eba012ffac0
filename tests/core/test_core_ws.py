"""WS codec, maintained order book and subscription table: known answers and properties."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gateway.core import ws_events as ev
from gateway.core.orderbook import BookInconsistent, OrderBook, apply_changes
from gateway.core.subscriptions import (
    CloseConnection,
    OpenConnection,
    Subscribe,
    SubscriptionTable,
    Unsubscribe,
)
from gateway.core.ws_codec import (
    CodecStats,
    auth_frame,
    decode_frame,
    parse_topic,
    subscribe_frames,
    topic_of,
    unsubscribe_frames,
)

D = Decimal
DOCS_FRAMES = {
    "welcome": '["welcome", 1694002700, 30000000000, 65000000000, "5c00d9c2-607e-4c7f-927b-b204b29e387b"]',
    "tk": '["tk", 1694003337, ["XRP_USDT", "0.50057000", "2036106.67737645", "1024194.48541761", "-0.28287417", "0.50677000", "0.49872000", "0.50057000", "0.50117000"]]',
    "t": '["t", 1694003848, 293107798, "BTC_USDT", "0.20285052", "25705.02000000", "buy"]',
    "d": '["d", 1694004500, "BTC_USDT", [[["101.00", "5.0"], ["102.00", "3.0"]], [["99.00", "2.0"], ["98.50", "1.0"]]]]',
    "p": '["p", 1694178331, {"Asks": [["26100.11000000", "0.30200000"]], "Bids": [["25768.09000000", "0.05900000"]], "Symbol": "BTC_USDT", "TotalAsks": "148953.50292677", "TotalBids": "148953.97125366"}]',
    "o": '["o", 1694178331, 12345, "BTC_UST", "ASK", "LIMIT", "0.5", "48000.00", "0.2", "0.3", "0.0", "14400.00", "48000.00", 1631386242.567, "FILLED", "14400.00", "SPOT", "0.00", ""]',
    "w": '["w", 1694178331, "USDT", "SPOT", "", "5.0", "1.0"]',
}


def test_docs_frames_decode() -> None:
    welcome = decode_frame(DOCS_FRAMES["welcome"])
    assert (
        isinstance(welcome, ev.Welcome)
        and welcome.ping_interval_s == 30
        and welcome.ping_timeout_s == 65
    )
    live = decode_frame('["welcome", 1694002700, 30000, 65000, "x"]')
    assert (
        isinstance(live, ev.Welcome) and live.ping_interval_s == 30
    )  # milliseconds on the live server
    tickers = decode_frame(DOCS_FRAMES["tk"])
    assert isinstance(tickers, ev.Tickers) and tickers.rows[0].change_percent == D("-0.28287417")
    trade = decode_frame(DOCS_FRAMES["t"])
    assert trade == ev.Trade(
        D(1694003848), 293107798, "BTC_USDT", D("0.20285052"), D("25705.02000000"), "buy"
    )
    diff = decode_frame(DOCS_FRAMES["d"])
    assert (
        isinstance(diff, ev.BookDiff)
        and diff.asks[1] == (D("102.00"), D("3.0"))
        and diff.bids[1] == (D("98.50"), D("1.0"))
    )
    flat = decode_frame('["d", 1, "BTC_USDT", [["101", "-1"]], [["99", "2"]]]')
    assert (
        isinstance(flat, ev.BookDiff)
        and flat.asks == ((D(101), D(-1)),)
        and flat.bids == ((D(99), D(2)),)
    )
    depth = decode_frame(DOCS_FRAMES["p"])
    assert (
        isinstance(depth, ev.Depth)
        and depth.pair == "BTC_USDT"
        and depth.total_asks == D("148953.50292677")
    )
    order = decode_frame(DOCS_FRAMES["o"])
    assert (
        isinstance(order, ev.OrderUpdate)
        and order.status == "FILLED"
        and order.done_at == D("1631386242.567")
    )
    assert order.stop_operator is None and order.amount_filled == D("0.3")
    wallet = decode_frame(DOCS_FRAMES["w"])
    assert wallet == ev.WalletUpdate(D(1694178331), "USDT", "SPOT", None, D("5.0"), D("1.0"))
    assert isinstance(decode_frame("1"), ev.TextPing) and isinstance(decode_frame("2"), ev.TextPong)


def test_errors_acks_and_tolerance() -> None:
    plain = decode_frame('["error", 1586857703.901509, "Topic does not exist"]')
    assert isinstance(plain, ev.ErrorFrame) and plain.command is None
    echoed = decode_frame('["error", 1, "Too many topics", ["subscribe", "trade.BTC_USDT"]]')
    assert isinstance(echoed, ev.ErrorFrame) and echoed.command == "subscribe"
    assert echoed.topics == ("trade.BTC_USDT",)
    live = decode_frame('["error", 1694002700, "Too many topics", "subscribe"]')
    assert live == ev.ErrorFrame(D(1694002700), "Too many topics", "subscribe", ())
    ack = decode_frame('["subscribe", 1586857703.901509, "topic1", "topic2"]')
    assert ack == ev.Ack("subscribe", D("1586857703.901509"), ("topic1", "topic2"))
    stats = CodecStats()
    extra = decode_frame(DOCS_FRAMES["t"][:-1] + ', "future-field"]', stats)
    assert isinstance(extra, ev.Trade) and stats.extra_elements == 1
    for raw in (
        "",
        "{",
        "[]",
        "[1]",
        '["zz"]',
        '["t", 1]',
        '["t", 1, 2, "X", "NaN", "1", "buy"]',
        '{"a": 1}',
    ):
        assert isinstance(decode_frame(raw, stats), ev.Unknown)
    assert stats.unknown + stats.malformed == 8


@given(st.text(max_size=200))
def test_decode_never_raises_on_text(text: str) -> None:
    decode_frame(text)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.sampled_from(
        ["welcome", "subscribe", "error", "tk", "t", "d", "p", "o", "w", "r", "ta", "x"]
    ),
    st.lists(JSON, max_size=20),
)
def test_decode_never_raises_on_json(kind: str, rest: list[object]) -> None:
    decode_frame(json.dumps([kind, *rest]))


@given(
    st.lists(
        st.from_regex(r"(trade|diff|market_depth)\.[A-Z]{2,8}_[A-Z]{3,5}", fullmatch=True),
        max_size=120,
    )
)
def test_subscribe_frames_fit_and_keep_order(topics: list[str]) -> None:
    frames = subscribe_frames(topics)
    decoded = [json.loads(f) for f in frames]
    assert all(len(f.encode()) <= 800 for f in frames)
    assert all(d[0] == "subscribe" for d in decoded)
    assert [t for d in decoded for t in d[1:]] == topics
    # greedy packing: no two neighbouring frames could have been one
    for first, second in itertools.pairwise(frames):
        merged = json.dumps(
            ["subscribe", *json.loads(first)[1:], json.loads(second)[1]], separators=(",", ":")
        )
        assert len(merged.encode()) > 800
    assert unsubscribe_frames(["trade.BTC_USDT"]) == ['["unsubscribe","trade.BTC_USDT"]']
    assert json.loads(auth_frame("a.b.c")) == ["auth", "a.b.c"]


def test_topics() -> None:
    assert parse_topic("trade.*") is not None and parse_topic("ticker.BTC_USDT") is not None
    assert (
        parse_topic("diff.*") is None
        and parse_topic("nope.BTC_USDT") is None
        and parse_topic("trade.btc_usdt") is None
    )
    assert topic_of(decode_frame(DOCS_FRAMES["t"])) == "trade.BTC_USDT"  # type: ignore[arg-type]
    assert topic_of(decode_frame(DOCS_FRAMES["tk"])) == "ticker.*"  # type: ignore[arg-type]


# -- order book ------------------------------------------------------------------------------
LEVEL_PRICES = st.integers(90, 110).map(D)
AMOUNTS = st.integers(0, 5).map(D)


class BookMachine(RuleBasedStateMachine):
    """Random snapshots and diffs: the consumer applying the returned changes always matches."""

    def __init__(self) -> None:
        super().__init__()
        self.book = OrderBook("X_Y")
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    @rule(
        bids=st.dictionaries(st.integers(90, 99).map(D), st.integers(1, 5).map(D), max_size=6),
        asks=st.dictionaries(st.integers(100, 110).map(D), st.integers(1, 5).map(D), max_size=6),
    )
    def snapshot(self, bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> None:
        apply_changes(self.bids, self.asks, self.book.apply_snapshot(bids.items(), asks.items()))

    @rule(
        bids=st.lists(st.tuples(LEVEL_PRICES, st.integers(-5, 5).map(D)), max_size=4),
        asks=st.lists(st.tuples(LEVEL_PRICES, st.integers(-5, 5).map(D)), max_size=4),
    )
    def diff(
        self, bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]
    ) -> None:
        before = (self.book.bids(), self.book.asks())
        try:
            changes = self.book.apply_diff(bids, asks)
        except BookInconsistent:
            assert (self.book.bids(), self.book.asks()) == before  # a rejected diff changes nothing
            return
        apply_changes(self.bids, self.asks, changes)

    @invariant()
    def consumer_equals_book_and_never_crossed(self) -> None:
        assert self.bids == dict(self.book.bids()) and self.asks == dict(self.book.asks())
        assert not self.book.is_crossed()
        assert [p for p, _ in self.book.bids()] == sorted(self.bids, reverse=True)


TestBook = BookMachine.TestCase
TestBook.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_book_rejects_inconsistent_diffs() -> None:
    book = OrderBook("X_Y")
    book.reset([(D(99), D(1))], [(D(101), D(1))])
    for bids, asks, reason in (
        ([(D(98), D(-1))], [], "missing level"),
        ([(D(99), D(-2))], [], "would become"),
        ([(D(102), D(1))], [], "cross"),
    ):
        with pytest.raises(BookInconsistent, match=reason):
            book.apply_diff(bids, asks)
    assert book.bids() == [(D(99), D(1))] and book.asks() == [(D(101), D(1))]
    assert book.apply_diff([(D(99), D(-1))], []) and book.best_bid() is None


# -- subscription table ----------------------------------------------------------------------
def test_known_answers() -> None:
    table = SubscriptionTable(max_topics_per_connection=20, linger_s=2.0)
    commands = [c for i in range(45) for c in table.acquire(f"trade.P{i}_USDT", 0)]
    assert sum(isinstance(c, OpenConnection) for c in commands) == 3
    assert sorted(len(t) for t in table.connections().values()) == [5, 20, 20]
    table2 = SubscriptionTable(linger_s=2.0)
    subs = [c for _ in range(500) for c in table2.acquire("trade.BTC_USDT", 0)]
    assert sum(isinstance(c, Subscribe) for c in subs) == 1
    released = [c for _ in range(500) for c in table2.release("trade.BTC_USDT", 1)]
    assert released == [] and table2.due(2.5) == []
    assert table2.due(3.0) == [Unsubscribe("pub-1", ("trade.BTC_USDT",)), CloseConnection("pub-1")]
    table3 = SubscriptionTable(linger_s=2.0)
    table3.acquire("t.X", 0)
    table3.release("t.X", 1)
    assert table3.acquire("t.X", 2) == [] and table3.due(10) == []  # re-acquire inside the linger
    with pytest.raises(ValueError):
        table3.release("t.Y", 0)


class TableMachine(RuleBasedStateMachine):
    """Commands replayed onto a simulated upstream keep exactly the live topics, <= 4 per conn."""

    def __init__(self) -> None:
        super().__init__()
        self.table = SubscriptionTable(max_topics_per_connection=4, linger_s=1.0)
        self.now = 0.0
        self.held: dict[str, int] = {}
        self.upstream: dict[str, set[str]] = {}
        self.subscribe_count: dict[str, int] = {}

    def run(self, commands: list[object]) -> None:
        for c in commands:
            if isinstance(c, OpenConnection):
                assert c.conn_id not in self.upstream
                self.upstream[c.conn_id] = set()
            elif isinstance(c, Subscribe):
                for t in c.topics:
                    self.upstream[c.conn_id].add(t)
            elif isinstance(c, Unsubscribe):
                for t in c.topics:
                    self.upstream[c.conn_id].discard(t)
            elif isinstance(c, CloseConnection):
                assert not self.upstream.pop(c.conn_id)

    @rule(topic=st.sampled_from([f"trade.T{i}_USDT" for i in range(12)]))
    def acquire(self, topic: str) -> None:
        self.held[topic] = self.held.get(topic, 0) + 1
        self.run(self.table.acquire(topic, self.now))

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        live = [t for t, n in self.held.items() if n > 0]
        if live:
            topic = data.draw(st.sampled_from(live))
            self.held[topic] -= 1
            self.run(self.table.release(topic, self.now))

    @rule(step=st.floats(0, 2))
    def tick(self, step: float) -> None:
        self.now += step
        self.run(self.table.due(self.now))

    @invariant()
    def consistent(self) -> None:
        self.table.assert_consistent()
        subscribed = [t for topics in self.upstream.values() for t in topics]
        assert len(subscribed) == len(set(subscribed))
        assert all(len(t) <= 4 for t in self.upstream.values())
        wanted = {t for t, n in self.held.items() if n > 0}
        assert wanted <= set(subscribed)


TestTable = TableMachine.TestCase
TestTable.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
