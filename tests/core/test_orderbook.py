"""Order book: snapshots and diffs against a reference model; change sets replay to the same book."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.orderbook import BookInconsistent, LevelChange, OrderBook, apply_changes

D = Decimal


def _book() -> OrderBook:
    book = OrderBook("BTC_USDT")
    book.apply_snapshot([(D(100), D(1)), (D(99), D(2))], [(D(101), D(3)), (D(102), D(4))])
    return book


def test_snapshot_orders_sides() -> None:
    book = _book()
    assert book.bids() == [(D(100), D(1)), (D(99), D(2))]
    assert book.asks() == [(D(101), D(3)), (D(102), D(4))]
    assert book.best_bid() == (D(100), D(1)) and book.best_ask() == (D(101), D(3))
    assert book.bids(1) == [(D(100), D(1))] and len(book) == 4 and not book.is_crossed()


def test_second_snapshot_returns_minimal_changes() -> None:
    book = _book()
    changes = book.apply_snapshot([(D(100), D(1)), (D(98), D(5))], [(D(101), D(7)), (D(102), D(4))])
    assert sorted(changes, key=lambda c: (c.side, c.price)) == [
        LevelChange("ask", D(101), D(7)),
        LevelChange("bid", D(98), D(5)),
        LevelChange("bid", D(99), D(0)),
    ]


def test_diff_adds_differences_and_removes_at_zero() -> None:
    book = _book()
    changes = book.apply_diff([(D(100), D(-1)), (D(99), D("0.5"))], [(D(103), D(1))])
    assert changes == [
        LevelChange("bid", D(100), D(0)),
        LevelChange("bid", D(99), D("2.5")),
        LevelChange("ask", D(103), D(1)),
    ]
    assert book.bids() == [(D(99), D("2.5"))]
    assert book.asks()[-1] == (D(103), D(1))


@pytest.mark.parametrize(
    ("bids", "asks", "reason"),
    [
        ([(D(100), D(-2))], [], "would become"),
        ([(D(50), D(-1))], [], "missing level"),
        ([(D(0), D(1))], [], "not positive"),
        ([(D(101), D(1))], [], "cross"),
        ([], [(D(100), D(1))], "cross"),
        ([(D(100), D(1))], [(D(101), D(-3)), (D(102), D(-4)), (D(100), D(1))], "cross"),
    ],
)
def test_rejected_diff_leaves_book_unchanged(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]], reason: str
) -> None:
    book = _book()
    before = (book.bids(), book.asks())
    with pytest.raises(BookInconsistent, match=reason):
        book.apply_diff(bids, asks)
    assert (book.bids(), book.asks()) == before


def test_removing_best_ask_allows_bid_at_its_price() -> None:
    book = _book()
    book.apply_diff([(D(101), D(1))], [(D(101), D(-3))])
    assert book.best_bid() == (D(101), D(1)) and book.best_ask() == (D(102), D(4))


@pytest.mark.parametrize(
    ("bids", "asks"),
    [([(D(101), D(1))], [(D(101), D(1))]), ([(D(-1), D(1))], []), ([], [(D(5), D(-1))])],
)
def test_bad_snapshot_refused_and_book_kept(
    bids: list[tuple[Decimal, Decimal]], asks: list[tuple[Decimal, Decimal]]
) -> None:
    book = _book()
    before = (book.bids(), book.asks())
    with pytest.raises(BookInconsistent):
        book.apply_snapshot(bids, asks)
    assert (book.bids(), book.asks()) == before


def test_equal_decimals_of_different_exponent_are_one_level() -> None:
    book = _book()
    assert book.apply_diff([(D("100.00"), D("1.0"))], []) == [
        LevelChange("bid", D("100.00"), D("2.0"))
    ]
    assert book.bids()[0] == (D(100), D(2)) and len(book) == 4


# --- property: random sequences against a reference model ---------------------------------------

_price = st.integers(1, 30).map(lambda n: D(n) / 2)
_amount = st.integers(0, 6).map(lambda n: D(n) / 4)
_delta = st.integers(-8, 8).map(lambda n: D(n) / 4)
_snapshot = st.tuples(
    st.just("snapshot"),
    # a snapshot lists each price once (duplicates have no defined meaning)
    st.lists(st.tuples(_price, _amount), max_size=8, unique_by=lambda level: level[0]),
    st.lists(st.tuples(_price, _amount), max_size=8, unique_by=lambda level: level[0]),
)
_diff = st.tuples(
    st.just("diff"),
    st.lists(st.tuples(_price, _delta), max_size=5),
    st.lists(st.tuples(_price, _delta), max_size=5),
)


def _model_snapshot(levels: list[tuple[Decimal, Decimal]]) -> dict[Decimal, Decimal] | None:
    out: dict[Decimal, Decimal] = {}
    for price, amount in levels:
        if amount < 0:
            return None
        if amount > 0:
            out[price] = amount
        else:
            out.pop(price, None)
    return out


def _model_diff(
    side: dict[Decimal, Decimal], deltas: list[tuple[Decimal, Decimal]]
) -> dict[Decimal, Decimal] | None:
    out = dict(side)
    for price, delta in deltas:
        if price not in out and delta < 0:
            return None
        new = out.get(price, D(0)) + delta
        if new < 0:
            return None
        if new == 0:
            out.pop(price, None)
        else:
            out[price] = new
    return out


def _crossed(bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> bool:
    return bool(bids) and bool(asks) and max(bids) >= min(asks)


@settings(max_examples=250, deadline=None)
@given(st.lists(st.one_of(_snapshot, _diff), min_size=1, max_size=25))
def test_changes_replay_to_the_same_book(
    steps: list[tuple[str, list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]],
) -> None:
    book = OrderBook("A_B")
    client_bids: dict[Decimal, Decimal] = {}
    client_asks: dict[Decimal, Decimal] = {}
    model_bids: dict[Decimal, Decimal] = {}
    model_asks: dict[Decimal, Decimal] = {}
    for kind, bids, asks in steps:
        if kind == "snapshot":
            new_bids, new_asks = _model_snapshot(bids), _model_snapshot(asks)
        else:
            new_bids, new_asks = _model_diff(model_bids, bids), _model_diff(model_asks, asks)
        expect_ok = (
            new_bids is not None and new_asks is not None and not _crossed(new_bids, new_asks)
        )
        before = (book.bids(), book.asks())
        try:
            changes = (
                book.apply_snapshot(bids, asks)
                if kind == "snapshot"
                else book.apply_diff(bids, asks)
            )
        except BookInconsistent:
            assert not expect_ok
            assert (book.bids(), book.asks()) == before
            continue
        assert expect_ok and new_bids is not None and new_asks is not None
        model_bids, model_asks = new_bids, new_asks
        apply_changes(client_bids, client_asks, changes)
        # minimal: each change touches a distinct level and actually changes it
        assert len({(c.side, c.price) for c in changes}) == len(changes)
        assert client_bids == model_bids == dict(book.bids())
        assert client_asks == model_asks == dict(book.asks())
        assert [p for p, _ in book.bids()] == sorted(model_bids, reverse=True)
        assert [p for p, _ in book.asks()] == sorted(model_asks)
        assert all(a > 0 for _, a in book.bids() + book.asks())
        assert not book.is_crossed()
        assert len(book) == len(model_bids) + len(model_asks)
