"""The messages a fleet member holding a topic publishes for the other members, exact both ways.

One message per upstream event or state change, on the topic's channel:
`e|holder|seq|Type|json` (an event; `seq` counts 1, 2, ... per holder and topic, so a follower
sees a gap), `s|holder|seq|state` (subscribed, reconnecting, resynced) and
`r|holder|seq|reason|message` (ALP refused the topic: Refusal below). Events are msgspec JSON of
the ws_events dataclasses: Decimals travel as their exact text, never through a float. A holder
sends a burst of records of one topic as one message, the records joined by newlines (JSON text
from msgspec never contains a raw newline, and the headers are member ids and numbers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import msgspec

from gateway.core import ws_events as ev
from gateway.core.stream_state import StreamState

# The events a topic delivers to consumers; nothing else is relayed.
EVENT_TYPES: Final[dict[str, type[ev.WsEvent]]] = {
    cls.__name__: cls
    for cls in (ev.Tickers, ev.Trade, ev.BookDiff, ev.Depth, ev.OrderUpdate, ev.WalletUpdate)
}
_ENCODER = msgspec.json.Encoder(decimal_format="string")


@dataclass(frozen=True, slots=True)
class Relayed:
    holder: str
    seq: int
    event: ev.WsEvent


@dataclass(frozen=True, slots=True)
class RelayedStatus:
    holder: str
    seq: int
    state: StreamState


class Refusal(enum.StrEnum):
    INVALID_TOPIC = "0"  # "Invalid topic"
    TOPIC_NOT_FOUND = "1"  # "Topic does not exist"
    LOGIN_REFUSED = "L"  # an account's private login, refused again and again


@dataclass(frozen=True, slots=True)
class RelayedRefusal:
    holder: str
    seq: int
    message: str
    reason: Refusal


Message = Relayed | RelayedStatus | RelayedRefusal


class WireError(ValueError):
    """A message no member wrote: counted and dropped by the reader."""


def encode_event(holder: str, seq: int, event: ev.WsEvent) -> bytes | None:
    """The message for `event`, or None for an event that is not relayed."""
    name = type(event).__name__
    if name not in EVENT_TYPES:
        return None
    return b"|".join(
        (b"e", holder.encode(), str(seq).encode(), name.encode(), _ENCODER.encode(event))
    )


def encode_status(holder: str, seq: int, state: StreamState) -> bytes:
    return f"s|{holder}|{seq}|{state.value}".encode()


def encode_refusal(holder: str, seq: int, message: str, reason: Refusal) -> bytes:
    text = message.replace("\r", " ").replace("\n", " ")  # one record, one line
    return f"r|{holder}|{seq}|{reason.value}|{text}".encode()


def join(records: list[bytes]) -> bytes:
    return b"\n".join(records)


def split(message: bytes) -> list[bytes]:
    return message.split(b"\n")


def decode(data: bytes) -> Message:
    parts = data.split(b"|", 4)
    if len(parts) < 4 or parts[0] not in (b"e", b"s", b"r") or not parts[2].isdigit():
        raise WireError("not a relayed message")
    holder, seq = parts[1].decode(errors="replace"), int(parts[2])
    try:
        if parts[0] == b"s" and len(parts) == 4:
            return RelayedStatus(holder, seq, StreamState(parts[3].decode()))
        if parts[0] == b"r" and len(parts) == 5:
            reason = Refusal(parts[3].decode(errors="replace"))
            return RelayedRefusal(holder, seq, parts[4].decode(errors="replace"), reason)
        if parts[0] == b"e" and len(parts) == 5:
            cls = EVENT_TYPES.get(parts[3].decode(errors="replace"))
            if cls is not None:
                return Relayed(holder, seq, msgspec.json.decode(parts[4], type=cls))
    except (ValueError, msgspec.DecodeError) as exc:  # ValidationError is a DecodeError
        raise WireError(f"undecodable relayed message: {type(exc).__name__}") from None
    raise WireError("not a relayed message")
