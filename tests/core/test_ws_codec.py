"""WS frame codec: every docs frame verbatim, both diff layouts, tolerance of garbage, chunked commands."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import ws_events as ev
from gateway.core.ws_codec import (
    MAX_FRAME_BYTES,
    CodecStats,
    Topic,
    auth_frame,
    decode_frame,
    parse_topic,
    subscribe_frames,
    topic_of,
    unsubscribe_frames,
)

D = Decimal


def test_welcome_docs_nanoseconds() -> None:
    stats = CodecStats()
    event = decode_frame(
        '["welcome", 1694002700, 30000000000, 65000000000, "5c00d9c2-607e-4c7f-927b-b204b29e387b"]',
        stats,
    )
    assert event == ev.Welcome(D(1694002700), D(30), D(65), "5c00d9c2-607e-4c7f-927b-b204b29e387b")
    assert stats.decoded == {"welcome": 1} and stats.extra_elements == 0


def test_welcome_live_milliseconds() -> None:
    event = decode_frame('["welcome", 1694002700.5, 20000, 45000, "uuid"]')
    assert isinstance(event, ev.Welcome)
    assert (event.ping_interval_s, event.ping_timeout_s) == (D(20), D(45))
    assert event.ts == D("1694002700.5")


def test_acks_and_auth_ack() -> None:
    event = decode_frame('["subscribe",1586857703.901509,"topic1","topic1"]')
    assert event == ev.Ack("subscribe", D("1586857703.901509"), ("topic1", "topic1"))
    assert decode_frame('["unsubscribe",1586857703.901509,"diff.BTC_USDT"]') == ev.Ack(
        "unsubscribe", D("1586857703.901509"), ("diff.BTC_USDT",)
    )
    assert decode_frame('["auth", 1]') == ev.Ack("auth", D(1), ())


def test_error_with_and_without_command() -> None:
    stats = CodecStats()
    assert decode_frame(
        '["error",1586857703.901509,"Topic does not exist"]', stats
    ) == ev.ErrorFrame(D("1586857703.901509"), "Topic does not exist", None)
    event = decode_frame('["error", 1, "Too many topics", ["subscribe", "diff.A_B"]]', stats)
    assert event == ev.ErrorFrame(D(1), "Too many topics", "subscribe", ("diff.A_B",))
    assert decode_frame('["error", 1, "Invalid topic: diff.NOPE_USDT", "subscribe"]') == (
        ev.ErrorFrame(D(1), "Invalid topic: diff.NOPE_USDT", "subscribe")
    )
    assert decode_frame('["error", 1, "oops", 7]') == ev.ErrorFrame(D(1), "oops", None)
    assert stats.decoded == {"error": 2} and stats.extra_elements == 0


TICKER_DOCS = """[
  "tk",
  1694003337,
  ["XRP_USDT", "0.50057000", "2036106.67737645", "1024194.48541761", "-0.28287417", "0.50677000", "0.49872000", "0.50057000", "0.50117000"],
  ["BTC_USDT", "25725.53000000", "6074.90520117", "156489295.23543299", "0.09369121", "25889.00000000", "25629.43000000", "25717.69000000", "25747.69000000"],
  ["LTC_USDT", "63.06000000", "19800.19751964", "1248404.62483421", "0.39802579", "63.63000000", "62.60000000", "63.03000000", "63.06000000"],
  ["DOGE_USDT", "0.06389400", "26360317.66603325", "1686644.45381961", "0.03131164", "0.06466200", "0.06354300", "0.06384708", "0.06396200"],
  ["ETH_USDT", "1632.69000000", "7379.92830702", "12057736.03072529", "0.10791388", "1648.02000000", "1625.16000000", "1632.69000000", "1635.28000000"],
  ["TRX_USDT", "0.07827864", "17930244.99331608", "1392304.80058763", "1.44319315", "0.07857449", "0.07710881", "0.07832800", "0.07842434"],
  ["USDC_USDT", "1.00130000", "2135117.29179469", "2136330.76840695", "0.08996401", "1.00190090", "0.99929970", "1.00160060", "1.00140000"]
]"""


def test_tickers_docs() -> None:
    event = decode_frame(TICKER_DOCS)
    assert isinstance(event, ev.Tickers) and event.ts == D(1694003337)
    assert [row.pair for row in event.rows] == [
        "XRP_USDT", "BTC_USDT", "LTC_USDT", "DOGE_USDT", "ETH_USDT", "TRX_USDT", "USDC_USDT",
    ]  # fmt: skip
    assert event.rows[1] == ev.TickerRow(
        "BTC_USDT", D("25725.53000000"), D("6074.90520117"), D("156489295.23543299"),
        D("0.09369121"), D("25889.00000000"), D("25629.43000000"), D("25717.69000000"),
        D("25747.69000000"),
    )  # fmt: skip
    assert str(event.rows[0].change_percent) == "-0.28287417"
    assert topic_of(event) == "ticker.*"


def test_trade_docs() -> None:
    event = decode_frame(
        '[\n  "t",\n  1694003848,\n  293107798,\n  "BTC_USDT",\n  "0.20285052",\n  "25705.02000000",\n  "buy"\n]'
    )
    assert event == ev.Trade(
        D(1694003848), 293107798, "BTC_USDT", D("0.20285052"), D("25705.02000000"), "buy"
    )
    assert topic_of(event) == "trade.BTC_USDT"


def test_diff_docs_nested_layout() -> None:
    event = decode_frame(
        '["d", 1694004500, "BTC_USDT", [[["101.00", "5.0"], ["102.00", "3.0"]], [["99.00", "2.0"], ["98.50", "1.0"]]]]'
    )
    assert event == ev.BookDiff(
        D(1694004500), "BTC_USDT",
        ((D("101.00"), D("5.0")), (D("102.00"), D("3.0"))),
        ((D("99.00"), D("2.0")), (D("98.50"), D("1.0"))),
    )  # fmt: skip
    assert topic_of(event) == "diff.BTC_USDT"


def test_diff_flat_layout_and_negative_differences() -> None:
    nested = decode_frame('["d", 1, "A_B", [[["1", "-2"]], [["0.5", "3"]]]]')
    flat = decode_frame('["d", 1, "A_B", [["1", "-2"]], [["0.5", "3"]]]')
    assert nested == flat == ev.BookDiff(D(1), "A_B", ((D(1), D(-2)),), ((D("0.5"), D(3)),))
    empty_asks = decode_frame('["d", 1, "A_B", [], [["0.5", "3"]]]')
    assert isinstance(empty_asks, ev.BookDiff) and empty_asks.asks == ()
    two_level_flat = decode_frame('["d", 1, "A_B", [["1", "2"], ["3", "4"]], []]')
    assert isinstance(two_level_flat, ev.BookDiff)
    assert two_level_flat.asks == ((D(1), D(2)), (D(3), D(4))) and two_level_flat.bids == ()


DEPTH_DOCS = """[
  "p",
  1694178331,
  {
    "Asks": [["26100.11000000", "0.30200000"], ["26149.68000000", "0.51800000"]],
    "Bids": [["25768.09000000", "0.05900000"], ["25748.38000000", "0.46300000"]],
    "Symbol": "BTC_USDT",
    "TotalAsks": "148953.50292677",
    "TotalBids": "148953.97125366"
  }
]"""


def test_depth_docs() -> None:
    event = decode_frame(DEPTH_DOCS)
    assert event == ev.Depth(
        D(1694178331), "BTC_USDT",
        ((D("26100.11000000"), D("0.30200000")), (D("26149.68000000"), D("0.51800000"))),
        ((D("25768.09000000"), D("0.05900000")), (D("25748.38000000"), D("0.46300000"))),
        D("148953.50292677"), D("148953.97125366"),
    )  # fmt: skip
    assert topic_of(event) == "market_depth.BTC_USDT"


ORDER_DOCS = """["o", 1694178331, 12345, "BTC_UST", "ASK", "LIMIT", "0.5", "48000.00", "0.2", "0.3",
  "0.0", "14400.00", "48000.00", 1631386242.567, "FILLED", "14400.00", "SPOT", "0.00", ""]"""


def test_order_update_docs() -> None:
    event = decode_frame(ORDER_DOCS)
    assert event == ev.OrderUpdate(
        ts=D(1694178331), order_id=12345, pair="BTC_UST", side="ASK", order_type="LIMIT",
        base_amount=D("0.5"), limit_price=D("48000.00"), amount_unfilled=D("0.2"),
        amount_filled=D("0.3"), amount_cancelled=D("0.0"), value_filled=D("14400.00"),
        average_price=D("48000.00"), done_at=D("1631386242.567"), status="FILLED",
        quote_amount=D("14400.00"), wallet_type="SPOT", stop_price=D("0.00"), stop_operator=None,
    )  # fmt: skip
    null_done = decode_frame(ORDER_DOCS.replace("1631386242.567", "null"))
    assert isinstance(null_done, ev.OrderUpdate) and null_done.done_at is None
    assert topic_of(event) is None


def test_wallet_update_docs() -> None:
    event = decode_frame('["w", 1694178331, "USDT", "SPOT", "", "5.0", "1.0"]')
    assert event == ev.WalletUpdate(D(1694178331), "USDT", "SPOT", None, D("5.0"), D("1.0"))
    isolated = decode_frame('["w", 1, "USDT", "MARGIN_ISOLATED", "BTC_USDT", "5", "1"]')
    assert isinstance(isolated, ev.WalletUpdate) and isolated.isolated_pair == "BTC_USDT"
    assert decode_frame('["w", 1, "USDT", "SPOT", null, "5", "1"]') == ev.WalletUpdate(
        D(1), "USDT", "SPOT", None, D(5), D(1)
    )


def test_rates_and_account_trade() -> None:
    event = decode_frame('["r", 1, [["45000.1", "BTC", "USDT"]]]')
    assert event == ev.Rates(D(1), ((D("45000.1"), "BTC", "USDT"),))
    assert topic_of(event) == "rates.*"
    assert decode_frame('["ta", 2, 7, "x"]') == ev.AccountTradeFrame(D(2), (7, "x"))


def test_text_ping_and_pong() -> None:
    assert decode_frame("1") == ev.TextPing()
    assert decode_frame(" 2\n") == ev.TextPong()
    assert decode_frame(b"1") == ev.TextPing()


def test_json_numbers_are_exact() -> None:
    event = decode_frame('["t", 1694003848.123456, 1, "A_B", 0.1, 1e-8, "sell"]')
    assert isinstance(event, ev.Trade)
    assert (
        event.amount == D("0.1") and event.price == D("1E-8") and event.ts == D("1694003848.123456")
    )


def test_extra_trailing_elements_are_counted() -> None:
    stats = CodecStats()
    trade = decode_frame('["t", 1, 2, "A_B", "1", "2", "buy", "extra", {"x": 1}]', stats)
    assert isinstance(trade, ev.Trade) and trade.side == "buy"
    decode_frame('["welcome", 1, 1000, 2000, "id", "more"]', stats)
    decode_frame('["w", 1, "USDT", "SPOT", "", "5.0", "1.0", null]', stats)
    decode_frame('["d", 1, "A_B", [[], []], "x"]', stats)
    decode_frame('["t", 1, 2, "A_B", "1", "2", "buy"]', stats)
    assert stats.extra_elements == 4
    assert stats.decoded == {"t": 2, "welcome": 1, "w": 1, "d": 1}
    assert stats.malformed == 0 and stats.unknown == 0


@pytest.mark.parametrize(
    "text",
    [
        "", "{", "nope", "null", "[]", "{}", "[1, 2]", '"tk"', "[null]",
        '["t", 1]', '["t", 1, "x", "A_B", "1", "2", "buy"]', '["t", 1, 2, 3, "1", "2", "buy"]',
        '["tk", 1, ["A_B", "1"]]', '["d", 1, "A_B", [[["x", "1"]], []]]', '["d", 1, "A_B", "x"]',
        '["p", 1, []]', '["p", 1, {"Asks": [["1"]], "Symbol": "A_B"}]', '["welcome", 1, "a", 2, "u"]',
        '["o", 1]', '["w", 1, "USDT", "SPOT", "", "NaN", "1"]', '["r", 1, [[1]]]', '["error", 1]',
        '["t", "NaN", 2, "A_B", "1", "2", "buy"]', '["t", 1, 2, "A_B", "Infinity", "2", "buy"]',
    ],
)  # fmt: skip
def test_garbage_is_unknown_and_counted(text: str) -> None:
    stats = CodecStats()
    event = decode_frame(text, stats)
    assert isinstance(event, ev.Unknown)
    assert stats.malformed == 1 and stats.unknown == 0 and stats.decoded == {}


def test_unknown_type_is_counted_separately() -> None:
    stats = CodecStats()
    event = decode_frame('["zz", 1, 2]', stats)
    assert event == ev.Unknown("zz", "unknown frame type")
    assert (stats.unknown, stats.malformed) == (1, 0)
    assert decode_frame('["ping"]') == ev.Unknown("ping", "unknown frame type")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)
_kinds = st.sampled_from(
    [
        "welcome",
        "subscribe",
        "unsubscribe",
        "auth",
        "error",
        "tk",
        "t",
        "d",
        "p",
        "o",
        "w",
        "r",
        "ta",
        "x",
    ]
)


def _total(stats: CodecStats) -> int:
    return sum(stats.decoded.values()) + stats.unknown + stats.malformed


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.binary(max_size=80))
def test_arbitrary_text_never_raises(text: str | bytes) -> None:
    stats = CodecStats()
    event = decode_frame(text, stats)
    if isinstance(event, ev.TextPing | ev.TextPong):
        assert _total(stats) == 0
    else:
        assert _total(stats) == 1
        assert isinstance(event, ev.Unknown) == (sum(stats.decoded.values()) == 0)


@pytest.mark.slow  # 400 hypothesis examples: ~3-4 s
@settings(max_examples=400, deadline=None)
@given(_kinds, st.lists(_json_values, max_size=20))
def test_arbitrary_typed_frames_never_raise(kind: str, rest: list[object]) -> None:
    stats = CodecStats()
    text = json.dumps([kind, *rest])
    event = decode_frame(text, stats)
    assert _total(stats) == 1
    if isinstance(event, ev.Unknown):
        assert stats.decoded == {}
    else:
        assert stats.decoded == {kind: 1}


# --- commands and topics -------------------------------------------------------------------------


def test_subscribe_and_unsubscribe_frames() -> None:
    assert subscribe_frames(["ticker.*", "diff.BTC_USDT"]) == [
        '["subscribe","ticker.*","diff.BTC_USDT"]'
    ]
    assert unsubscribe_frames(["trade.*"]) == ['["unsubscribe","trade.*"]']
    assert subscribe_frames([]) == []
    assert auth_frame("a.b.c") == '["auth","a.b.c"]'


def test_large_topic_lists_are_chunked() -> None:
    topics = [f"market_depth.PAIR{i:04d}_USDT" for i in range(200)]
    frames = subscribe_frames(topics)
    assert len(frames) > 1
    assert all(len(f.encode()) <= MAX_FRAME_BYTES for f in frames)
    assert [t for f in frames for t in json.loads(f)[1:]] == topics
    with pytest.raises(ValueError):
        subscribe_frames(["x" * 900])


def test_topic_filling_a_frame_exactly_fits() -> None:
    frame = '["subscribe","diff.BTC_USDT"]'
    assert subscribe_frames(["diff.BTC_USDT"], len(frame)) == [frame]
    with pytest.raises(ValueError):
        subscribe_frames(["diff.BTC_USDT"], len(frame) - 1)


_topic = st.builds(
    lambda ch, a, b: f"{ch}.{a}_{b}",
    st.sampled_from(["ticker", "trade", "diff", "market_depth"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=16),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=16),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_topic, max_size=120), st.integers(70, 2000))
def test_frames_bounded_and_order_kept(topics: list[str], max_bytes: int) -> None:
    for command, build in (("subscribe", subscribe_frames), ("unsubscribe", unsubscribe_frames)):
        frames = build(topics, max_bytes)
        assert all(len(f.encode()) <= max_bytes for f in frames)
        decoded = [json.loads(f) for f in frames]
        assert all(d[0] == command and len(d) > 1 for d in decoded)
        assert [t for d in decoded for t in d[1:]] == topics
        # greedy packing: no frame could have taken the next one's first topic
        for first, second in itertools.pairwise(decoded):
            merged = json.dumps([*first, second[1]], separators=(",", ":"))
            assert len(merged.encode()) > max_bytes


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("ticker.*", Topic("ticker", "*")),
        ("trade.*", Topic("trade", "*")),
        ("rates.*", Topic("rates", "*")),
        ("ticker.BTC_USDT", Topic("ticker", "BTC_USDT")),
        ("trade.1INCH_USDT", Topic("trade", "1INCH_USDT")),
        ("diff.BTC_USDT", Topic("diff", "BTC_USDT")),
        ("market_depth.ETH_USDT", Topic("market_depth", "ETH_USDT")),
        ("diff.*", None),
        ("market_depth.*", None),
        ("rates.BTC_USDT", None),
        ("diff.btc_usdt", None),
        ("diff.BTC", None),
        ("diff.BTC_", None),
        ("diff.BTC_USDT_X", None),
        ("diff.BTC-USDT", None),
        ("diff.ÄBC_USDT", None),
        ("orders.BTC_USDT", None),
        ("ticker", None),
        ("", None),
    ],
)
def test_parse_topic(text: str, topic: Topic | None) -> None:
    assert parse_topic(text) == topic
    if topic is not None:
        assert str(topic) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_topic_never_raises_and_round_trips(text: str) -> None:
    topic = parse_topic(text)
    if topic is not None:
        assert str(topic) == text
