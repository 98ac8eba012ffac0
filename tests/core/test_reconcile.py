"""Reconciliation and idempotency decisions, scripted: no sockets, ALP's order objects by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.constants import OrderSide, OrderType, WalletType
from gateway.core.idempotency import Decision, IdempotencyStore, State, decide, fingerprint
from gateway.core.models import Order
from gateway.core.reconcile import LISTED_ORDERS, Mark, Verdict, lookup
from gateway.core.validation import OrderSpec

SPEC = OrderSpec(
    pair="BTC_USDT",
    side=OrderSide.BUY,
    wallet_type=WalletType.SPOT,
    order_type=OrderType.LIMIT,
    base_amount=D("0.01"),
    quote_amount=None,
    limit_price=D("20000"),
    stop_price=None,
    stop_operator=None,
    client_order_id="c-1",
    post_only=False,
)
SENT_AT = 1_700_000_000.0


def order(oid: int, *, price: str = "20000", amount: str = "0.01", at: float = SENT_AT) -> Order:
    return Order(
        id=oid, account_id=1001, pair="BTC_USDT", amount=D(amount), price=D(price),
        side=OrderSide.BUY, side_raw="BID", status=None, status_raw="OPEN",
        type=OrderType.LIMIT, type_raw="LIMIT", wallet_type=WalletType.SPOT, wallet_type_raw="SPOT",
        amount_canceled=D(0), amount_filled=D(0), date=datetime.fromtimestamp(at, UTC),
        open_at=None, tif=None, tif_raw="", updated_at=None, done_at=None, expire_after=None,
        stop_price=None,
    )  # fmt: skip


def test_one_newer_match_is_found_older_and_claimed_ones_are_not() -> None:
    mark = Mark(newest_id=10, sent_at=SENT_AT)
    listed = [order(13, price="20001"), order(12), order(9)]  # newest first
    assert lookup(listed, SPEC, mark).candidates == (12,)
    assert lookup(listed, SPEC, mark, claimed={12}).verdict is Verdict.ABSENT
    assert lookup([order(12), order(11)], SPEC, mark).verdict is Verdict.SEVERAL


def test_without_an_id_mark_the_time_decides_with_the_skew() -> None:
    mark = Mark(newest_id=None, sent_at=SENT_AT, skew_s=5.0)
    assert lookup([order(5, at=SENT_AT - 4)], SPEC, mark).verdict is Verdict.FOUND
    assert lookup([order(5, at=SENT_AT - 6)], SPEC, mark).verdict is Verdict.ABSENT


def test_a_full_window_newer_than_the_mark_proves_nothing() -> None:
    """GET /accounts/order lists the 100 newest: ours may be pushed out of the window."""
    mark = Mark(newest_id=10, sent_at=SENT_AT)
    others = [order(200 - i, price="19000") for i in range(LISTED_ORDERS)]
    assert lookup(others, SPEC, mark).verdict is Verdict.INCOMPLETE
    assert lookup([*others[:-1], order(9)], SPEC, mark).verdict is Verdict.ABSENT  # reaches back


@given(st.lists(st.integers(1, 60), unique=True, max_size=30), st.integers(0, 60))
def test_a_verdict_never_names_an_order_at_or_before_the_mark(ids: list[int], mark: int) -> None:
    listed = [order(i) for i in sorted(ids, reverse=True)]
    result = lookup(listed, SPEC, Mark(newest_id=mark, sent_at=SENT_AT))
    assert all(c > mark for c in result.candidates)
    assert (result.verdict is Verdict.FOUND) == (len(result.candidates) == 1)


def test_idempotency_decisions_and_expiry() -> None:
    store = IdempotencyStore(window_s=10.0)
    key = ("svc", "demo", "c-1")
    print_ = fingerprint(SPEC)
    assert store.begin(key, print_, 0.0)[0] is Decision.PROCEED
    assert store.begin(key, print_, 1.0)[0] is Decision.WAIT
    assert store.begin(key, "other", 1.0)[0] is Decision.CONFLICT
    store.placed(key, (7,), reconciled=False)
    assert store.begin(key, print_, 2.0)[0] is Decision.REPLAY
    assert store.begin(key, print_, 11.0)[0] is Decision.PROCEED  # the window passed
    store.unknown(key, (7, 8))
    assert store.begin(key, print_, 12.0)[0] is Decision.RECHECK
    store.forget(key)
    assert store.begin(key, print_, 13.0)[0] is Decision.PROCEED


def test_the_fingerprint_is_the_order_not_its_spelling_or_key() -> None:
    import dataclasses

    same = dataclasses.replace(SPEC, limit_price=D("20000.00"), client_order_id="other")
    assert fingerprint(same) == fingerprint(SPEC)
    assert fingerprint(dataclasses.replace(SPEC, base_amount=D("0.02"))) != fingerprint(SPEC)


def test_one_idempotency_rule_for_process_and_fleet() -> None:
    same, other = "fp", "other"
    table = [
        ((other, State.PLACED, False), Decision.CONFLICT),
        ((other, State.IN_FLIGHT, True), Decision.CONFLICT),
        ((same, State.PLACED, True), Decision.REPLAY),
        ((same, State.IN_FLIGHT, False), Decision.WAIT),
        ((same, State.IN_FLIGHT, True), Decision.RECHECK),  # its sender's lease ran out
        ((same, State.UNKNOWN, False), Decision.RECHECK),
    ]
    for (stored, state, gone), want in table:
        assert decide(stored, state, same, sender_gone=gone) is want, (stored, state, gone)
