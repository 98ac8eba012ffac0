"""What a topic's holder publishes for the fleet comes back exact: Decimals keep their text (scale
included), big trade ids stay ints, and bytes no member wrote are a WireError, never a crash."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import event_wire
from gateway.core import ws_events as ev
from gateway.core.event_wire import Refusal, Relayed, RelayedRefusal, RelayedStatus, WireError
from gateway.core.stream_state import StreamState

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.is_finite()
)
maybe = st.none() | decimals
text = st.text(max_size=20)
side = st.lists(st.tuples(decimals, decimals), max_size=4).map(tuple)

events = st.one_of(
    st.builds(
        ev.Trade,
        decimals,
        st.integers(min_value=0, max_value=2**80),
        text,
        decimals,
        decimals,
        text,
    ),
    st.builds(ev.BookDiff, decimals, text, side, side),
    st.builds(ev.Depth, decimals, text, side, side, maybe, maybe),
    st.builds(
        ev.Tickers,
        decimals,
        st.lists(st.builds(ev.TickerRow, text, *(decimals,) * 8), max_size=3).map(tuple),
    ),
    st.builds(ev.WalletUpdate, decimals, text, text, st.none() | text, decimals, decimals),
)


@given(events, st.integers(min_value=1, max_value=2**62))
def test_events_come_back_exactly(event: ev.WsEvent, seq: int) -> None:
    data = event_wire.encode_event("host:1:ab", seq, event)
    assert data is not None
    back = event_wire.decode(data)
    assert back == Relayed("host:1:ab", seq, event)
    assert isinstance(back, Relayed)
    for name in getattr(event, "__slots__", ()):  # equal and the same text: 1.10 stays 1.10
        assert str(getattr(back.event, name)) == str(getattr(event, name))


def test_scale_and_exponent_survive() -> None:
    trade = ev.Trade(
        Decimal("1700000000.123"), 2**63, "BTC_USDT", Decimal("0.10"), Decimal("1E+3"), "buy"
    )
    data = event_wire.encode_event("m", 1, trade)
    assert data is not None and b"0.10" in data and b'"1E+3"' in data
    back = event_wire.decode(data)
    assert isinstance(back, Relayed) and isinstance(back.event, ev.Trade)
    assert str(back.event.amount) == "0.10" and back.event.trade_id == 2**63


def test_statuses_and_refusals_round_trip() -> None:
    for state in StreamState:
        assert event_wire.decode(event_wire.encode_status("m", 3, state)) == RelayedStatus(
            "m", 3, state
        )
    message = "Topic | does not exist"
    for reason in Refusal:
        data = event_wire.encode_refusal("m", 4, message, reason)
        assert event_wire.decode(data) == RelayedRefusal("m", 4, message, reason)


def test_events_that_are_not_relayed() -> None:
    for event in (ev.TextPing(), ev.Unknown("x", "y"), ev.Ack("subscribe", Decimal(1), ("t",))):
        assert event_wire.encode_event("m", 1, event) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"e",
        b"x|m|1|Trade|{}",
        b"e|m|-1|Trade|{}",
        b"e|m|1|Trade|{}",  # fields missing
        b'e|m|1|Trade|{"ts":"1","trade_id":"nope","pair":"X","amount":"1","price":"1","side":"b"}',
        b"e|m|1|Welcome|{}",  # not a relayed type
        b"e|m|1|Trade|[[[[",
        b"s|m|1|dancing",
        b"s|m|1",
        b"r|m|1|2|message",
        b"\xff\xfe|\xff|1|s",
    ],
)
def test_bytes_no_member_wrote_are_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        event_wire.decode(data)


@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):  # anything else escaping fails the test
        event_wire.decode(data)


@given(st.lists(events, min_size=1, max_size=8))
def test_a_burst_joined_into_one_message_splits_back_into_its_records(
    burst: list[ev.WsEvent],
) -> None:
    records = [event_wire.encode_event("m:1", n + 1, e) for n, e in enumerate(burst)]
    assert all(r is not None for r in records)
    joined = event_wire.join([r for r in records if r is not None])
    back = [event_wire.decode(r) for r in event_wire.split(joined)]
    assert back == [Relayed("m:1", n + 1, e) for n, e in enumerate(burst)]


def test_a_refusal_with_line_breaks_stays_one_record() -> None:
    data = event_wire.encode_refusal("m", 1, "bad\ntopic\r\n", Refusal.INVALID_TOPIC)
    assert event_wire.split(data) == [data]
    assert event_wire.decode(data) == RelayedRefusal("m", 1, "bad topic  ", Refusal.INVALID_TOPIC)
