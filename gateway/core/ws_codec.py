"""ALP WebSocket frame codec: text in -> typed events out (never raises); commands out, chunked."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import msgspec

from gateway.core import ws_events as ev
from gateway.core.decimals import DecimalFormatError, parse_decimal

PONG_TEXT: Final = "2"
MAX_FRAME_BYTES: Final = 800
# Welcome intervals above this are nanoseconds (docs); below, milliseconds (live server).
_NANOSECOND_THRESHOLD: Final = Decimal(10) ** 8
PUBLIC_CHANNELS: Final = ("ticker", "trade", "diff", "market_depth", "rates")
WILDCARD_CHANNELS: Final = ("ticker", "trade", "rates")


class _Bad(Exception):
    pass


@dataclass
class CodecStats:
    decoded: dict[str, int] = field(default_factory=dict)
    unknown: int = 0
    malformed: int = 0
    extra_elements: int = 0


# JSON numbers with a fraction or exponent decode straight from their text to Decimal (never via
# a float); integers stay int. msgspec: ~0.8 us a trade frame vs orjson's 0.5 (which gives floats).
_JSON: Final = msgspec.json.Decoder(float_hook=Decimal)


def _dec(value: Any) -> Decimal:
    try:
        return parse_decimal(value)
    except DecimalFormatError as exc:
        raise _Bad(str(exc)) from exc


def _opt_dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return _dec(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad("expected text")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Bad("expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise _Bad("expected an integer")


def _side(levels: Any) -> ev.Side:
    if levels is None:
        return ()
    if not isinstance(levels, list):
        raise _Bad("expected a list of levels")
    out = []
    for level in levels:
        if not isinstance(level, list) or len(level) < 2:
            raise _Bad("expected [price, quantity]")
        out.append((_dec(level[0]), _dec(level[1])))
    return tuple(out)


def _need(frame: list[Any], n: int) -> None:
    if len(frame) < n:
        raise _Bad(f"expected at least {n} elements")


def _welcome(f: list[Any]) -> ev.Welcome:
    _need(f, 5)
    interval, timeout = _dec(f[2]), _dec(f[3])
    scale = Decimal(10) ** 9 if interval >= _NANOSECOND_THRESHOLD else Decimal(1000)
    return ev.Welcome(_dec(f[1]), interval / scale, timeout / scale, str(f[4]))


def _ack(f: list[Any]) -> ev.Ack:
    _need(f, 2)
    return ev.Ack(f[0], _dec(f[1]), tuple(str(t) for t in f[2:]))


def _error(f: list[Any]) -> ev.ErrorFrame:
    _need(f, 3)
    command = f[3] if len(f) > 3 else None
    if isinstance(command, list) and command and isinstance(command[0], str):
        return ev.ErrorFrame(_dec(f[1]), str(f[2]), command[0], tuple(str(t) for t in command[1:]))
    return ev.ErrorFrame(_dec(f[1]), str(f[2]), command if isinstance(command, str) else None)


def _tickers(f: list[Any]) -> ev.Tickers:
    _need(f, 2)
    rows = []
    for row in f[2:]:
        if not isinstance(row, list) or len(row) < 9:
            raise _Bad("ticker row needs 9 fields")
        rows.append(ev.TickerRow(_text(row[0]), *(_dec(v) for v in row[1:9])))
    return ev.Tickers(_dec(f[1]), tuple(rows))


def _trade(f: list[Any]) -> ev.Trade:
    _need(f, 7)
    return ev.Trade(_dec(f[1]), _int(f[2]), _text(f[3]), _dec(f[4]), _dec(f[5]), _text(f[6]))


def _is_nested_sides(value: Any) -> bool:
    """[asks, bids] where each side is a list of [price, qty] lists (the documented layout)."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(
            isinstance(side, list) and all(isinstance(lv, list) for lv in side) for side in value
        )
    )


def _diff(f: list[Any]) -> ev.BookDiff:
    """Both layouts: ["d", ts, pair, [asks, bids]] (docs) and ["d", ts, pair, asks, bids]."""
    _need(f, 4)
    if len(f) == 4 or _is_nested_sides(f[3]):
        if not _is_nested_sides(f[3]):
            raise _Bad("expected [asks, bids]")
        asks, bids = f[3]
    else:
        asks, bids = f[3], f[4]
    return ev.BookDiff(_dec(f[1]), _text(f[2]), _side(asks), _side(bids))


def _depth(f: list[Any]) -> ev.Depth:
    _need(f, 3)
    body = f[2]
    if not isinstance(body, dict):
        raise _Bad("depth payload must be an object")
    return ev.Depth(
        _dec(f[1]),
        _text(body.get("Symbol")),
        _side(body.get("Asks")),
        _side(body.get("Bids")),
        _opt_dec(body.get("TotalAsks")),
        _opt_dec(body.get("TotalBids")),
    )


def _order(f: list[Any]) -> ev.OrderUpdate:
    _need(f, 19)
    return ev.OrderUpdate(
        ts=_dec(f[1]),
        order_id=_int(f[2]),
        pair=_text(f[3]),
        side=_text(f[4]),
        order_type=_text(f[5]),
        base_amount=_opt_dec(f[6]),
        limit_price=_opt_dec(f[7]),
        amount_unfilled=_opt_dec(f[8]),
        amount_filled=_opt_dec(f[9]),
        amount_cancelled=_opt_dec(f[10]),
        value_filled=_opt_dec(f[11]),
        average_price=_opt_dec(f[12]),
        done_at=_opt_dec(f[13]),
        status=_text(f[14]),
        quote_amount=_opt_dec(f[15]),
        wallet_type=str(f[16] or ""),
        stop_price=_opt_dec(f[17]),
        stop_operator=str(f[18]) if f[18] else None,
    )


def _wallet(f: list[Any]) -> ev.WalletUpdate:
    _need(f, 7)
    return ev.WalletUpdate(
        _dec(f[1]),
        _text(f[2]),
        str(f[3] or ""),
        str(f[4]) if f[4] else None,
        _dec(f[5]),
        _dec(f[6]),
    )


def _rates(f: list[Any]) -> ev.Rates:
    _need(f, 3)
    rows = []
    for row in f[2] or []:
        if not isinstance(row, list) or len(row) < 3:
            raise _Bad("rate row needs 3 fields")
        rows.append((_dec(row[0]), str(row[1]), str(row[2])))
    return ev.Rates(_dec(f[1]), tuple(rows))


def _account_trade(f: list[Any]) -> ev.AccountTradeFrame:
    _need(f, 2)
    return ev.AccountTradeFrame(_dec(f[1]), tuple(f[2:]))


_DECODERS: Final[dict[str, tuple[Callable[[list[Any]], ev.WsEvent], int]]] = {
    # kind -> (decoder, documented element count; more counts as extra trailing elements)
    "welcome": (_welcome, 5),
    "subscribe": (_ack, 10**9),
    "unsubscribe": (_ack, 10**9),
    "auth": (_ack, 10**9),
    "error": (_error, 4),
    "tk": (_tickers, 10**9),
    "t": (_trade, 7),
    "d": (_diff, 4),
    "p": (_depth, 3),
    "o": (_order, 19),
    "w": (_wallet, 7),
    "r": (_rates, 3),
    "ta": (_account_trade, 10**9),
}


def decode_frame(text: str | bytes, stats: CodecStats | None = None) -> ev.WsEvent:
    """Never raises: anything undecodable is an `Unknown` (and counted)."""
    stripped = text.strip() if isinstance(text, str) else text.decode("utf-8", "replace").strip()
    if stripped == "1":
        return ev.TextPing()
    if stripped == "2":
        return ev.TextPong()
    try:
        frame = _JSON.decode(stripped)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return _count(stats, ev.Unknown("", "malformed JSON"), malformed=True)
    if not isinstance(frame, list) or not frame or not isinstance(frame[0], str):
        return _count(stats, ev.Unknown("", "not a [type, ...] array"), malformed=True)
    kind = frame[0]
    entry = _DECODERS.get(kind)
    if entry is None:
        return _count(stats, ev.Unknown(kind[:32], "unknown frame type"))
    decoder, arity = entry
    try:
        event = decoder(frame)
    except (_Bad, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        return _count(stats, ev.Unknown(kind, f"malformed: {exc}"[:200]), malformed=True)
    if stats is not None:
        stats.decoded[kind] = stats.decoded.get(kind, 0) + 1
        if len(frame) > arity:
            stats.extra_elements += 1
    return event


def _count(stats: CodecStats | None, event: ev.Unknown, *, malformed: bool = False) -> ev.Unknown:
    if stats is not None:
        if malformed:
            stats.malformed += 1
        else:
            stats.unknown += 1
    return event


def chunk_topics(command: str, topics: Sequence[str], max_bytes: int) -> list[tuple[str, ...]]:
    """Topics grouped so that each `[command, *topics]` frame stays within `max_bytes`."""
    chunks: list[tuple[str, ...]] = []
    current: list[str] = []
    for topic in topics:
        if len(json.dumps([command, topic], separators=(",", ":")).encode()) > max_bytes:
            raise ValueError(f"topic {topic[:40]!r} alone exceeds {max_bytes} bytes")
        candidate = [*current, topic]
        if len(json.dumps([command, *candidate], separators=(",", ":")).encode()) > max_bytes:
            chunks.append(tuple(current))
            current = [topic]
        else:
            current = candidate
    if current:
        chunks.append(tuple(current))
    return chunks


def command_frame(command: str, topics: Sequence[str]) -> str:
    return json.dumps([command, *topics], separators=(",", ":"))


def _frames(command: str, topics: Sequence[str], max_bytes: int) -> list[str]:
    return [command_frame(command, c) for c in chunk_topics(command, topics, max_bytes)]


def subscribe_frames(topics: Sequence[str], max_bytes: int = MAX_FRAME_BYTES) -> list[str]:
    return _frames("subscribe", topics, max_bytes)


def unsubscribe_frames(topics: Sequence[str], max_bytes: int = MAX_FRAME_BYTES) -> list[str]:
    return _frames("unsubscribe", topics, max_bytes)


def auth_frame(jwt: str) -> str:
    return json.dumps(["auth", jwt], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Topic:
    channel: str
    pair: str  # "*" for wildcard topics

    def __str__(self) -> str:
        return f"{self.channel}.{self.pair}"


def parse_topic(text: str) -> Topic | None:
    channel, dot, pair = text.partition(".")
    if not dot or channel not in PUBLIC_CHANNELS:
        return None
    if pair == "*":
        return Topic(channel, pair) if channel in WILDCARD_CHANNELS else None
    left, sep, right = pair.partition("_")
    valid = sep and left.isalnum() and right.isalnum() and pair.isupper() and pair.isascii()
    return Topic(channel, pair) if valid and channel != "rates" else None


def topic_of(event: ev.WsEvent) -> str | None:
    """The subscription topic a public event belongs to."""
    if isinstance(event, ev.Trade):
        return f"trade.{event.pair}"
    if isinstance(event, ev.BookDiff):
        return f"diff.{event.pair}"
    if isinstance(event, ev.Depth):
        return f"market_depth.{event.pair}"
    if isinstance(event, ev.Tickers):
        return "ticker.*"
    if isinstance(event, ev.Rates):
        return "rates.*"
    return None
