"""Pure protocol decisions: which command an ALP error answers, trade de-duplication, exact numbers."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.core import ws_events as ev
from gateway.core.trade_dedup import TradeDedup
from gateway.core.ws_codec import decode_frame
from gateway.core.ws_commands import ErrorKind, PendingSubscribes, Refusal, classify_error

# verbatim from the docs and API-NOTES / the live probe
DOCS_ERROR = '["error",1586857703.901509,"Topic does not exist"]'
LIVE_TOO_MANY = '["error", 1694002700, "Too many topics", "subscribe"]'
LIVE_INVALID = '["error", 1694002700, "Invalid topic: diff.NOPE_USDT", "subscribe"]'


def kind_of(raw: str, *, auth_pending: bool = False) -> ErrorKind:
    event = decode_frame(raw)
    assert isinstance(event, ev.ErrorFrame)
    return classify_error(event.message, event.command, auth_pending=auth_pending)


def test_error_frames_are_classified_by_what_they_answer() -> None:
    assert kind_of(DOCS_ERROR) is ErrorKind.TOPIC_NOT_FOUND
    assert kind_of(LIVE_TOO_MANY) is ErrorKind.TOO_MANY_TOPICS
    assert kind_of(LIVE_INVALID) is ErrorKind.TOPIC_INVALID
    assert kind_of('["error", 1, "Too many topics", ["subscribe", "t.A_B"]]') is (
        ErrorKind.TOO_MANY_TOPICS
    )
    assert kind_of('["error", 1, "invalid token", "auth"]') is ErrorKind.AUTH_REFUSED
    assert kind_of('["error", 1, "token expired"]', auth_pending=True) is ErrorKind.AUTH_REFUSED
    assert kind_of('["error", 1, "token expired"]') is ErrorKind.OTHER
    assert kind_of('["error", 1, "temporary problem with trade.ETH_USDT"]') is ErrorKind.OTHER
    assert kind_of('["error", 1, "Invalid topic: x", "unsubscribe"]') is ErrorKind.OTHER


def test_errors_answer_the_oldest_pending_frame() -> None:
    pending = PendingSubscribes()
    pending.sent("c1", ("trade.A_B", "trade.C_D"))
    pending.sent("c1", ("diff.A_B",))
    pending.sent("c2", ("ticker.*",))
    pending.acknowledged("c1", ("trade.A_B", "trade.C_D"))
    assert pending.in_flight("c1") == 1
    assert pending.refused("c1", ErrorKind.TOO_MANY_TOPICS) == Refusal(
        ErrorKind.TOO_MANY_TOPICS, ("diff.A_B",)
    )
    assert pending.refused("c1", ErrorKind.TOPIC_NOT_FOUND).topics == ()  # nothing pending
    assert pending.in_flight("c2") == 1
    pending.reset("c2")
    assert pending.refused("c2", ErrorKind.TOPIC_INVALID).topics == ()


def test_partial_ack_leaves_the_refused_rest_pending() -> None:
    pending = PendingSubscribes()
    pending.sent("c", ("a", "b", "c"))
    pending.acknowledged("c", ("a", "c"))
    assert pending.refused("c", ErrorKind.TOO_MANY_TOPICS).topics == ("b",)


def test_echoed_topics_win_over_the_queue() -> None:
    pending = PendingSubscribes()
    pending.sent("c", ("a",))
    pending.sent("c", ("b",))
    assert pending.refused("c", ErrorKind.TOO_MANY_TOPICS, ("b",)).topics == ("b",)
    assert pending.in_flight("c") == 1


@given(st.lists(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4), max_size=8))
def test_every_sent_topic_is_answered_exactly_once(frames: list[list[str]]) -> None:
    pending = PendingSubscribes()
    for frame in frames:
        pending.sent("c", frame)
    answered: list[str] = []
    while pending.in_flight("c"):
        answered.extend(pending.refused("c", ErrorKind.TOO_MANY_TOPICS).topics)
    assert answered == [t for frame in frames for t in frame]


def test_dedup_drops_exact_repeats_only() -> None:
    dedup = TradeDedup(window=10)
    assert [dedup.seen("X", i) for i in (5, 5, 7, 6, 2**62, 8, 7)] == [
        False,
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert dedup.duplicates == 2 and dedup.regressions == 2  # 6 after 7, 8 after 2**62
    dedup.reset()
    assert dedup.seen("X", 5) is False
    small = TradeDedup(window=2)
    assert [small.seen("Y", i) for i in (1, 2, 3, 1)] == [False, False, False, False]  # evicted


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=60))
def test_dedup_never_drops_a_first_sighting(ids: list[int]) -> None:
    dedup = TradeDedup(window=10_000)
    delivered = [i for i in ids if not dedup.seen("P", i)]
    assert delivered == list(dict.fromkeys(ids))


def test_ws_numbers_never_pass_through_a_float() -> None:
    raw = '["t", 1694003848.123456789012345, 293107798, "BTC_USDT", 0.1, 25705.020000000000000001, "buy"]'
    event = decode_frame(raw)
    assert isinstance(event, ev.Trade)
    assert event.ts == Decimal("1694003848.123456789012345")
    assert event.amount == Decimal("0.1") and event.price == Decimal("25705.020000000000000001")
    depth = decode_frame(
        '["p", 1, {"Asks": [[26100.11, 0.302]], "Bids": [], "Symbol": "BTC_USDT",'
        ' "TotalAsks": "0.302", "TotalBids": "0"}]'
    )
    assert isinstance(depth, ev.Depth) and depth.asks == ((Decimal("26100.11"), Decimal("0.302")),)
    assert depth.total_asks == Decimal("0.302")
