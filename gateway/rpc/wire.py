"""Protobuf wire-format pieces for fan-out: encode an event once, assemble batches by concatenation.

A `repeated` message field on the wire is just its elements one after another, each as
(tag, length, bytes). So a batch response for one subscriber is the concatenation of the
already-encoded elements: an event delivered to N subscribers is converted and serialised once.
"""

from __future__ import annotations

from typing import Final

_WIRE_LEN: Final = 2
_WIRE_VARINT: Final = 0


def varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def length_delimited(field_number: int, payload: bytes) -> bytes:
    """One element of a message (or bytes/string) field: tag + length + payload."""
    return varint(field_number << 3 | _WIRE_LEN) + varint(len(payload)) + payload


def uint_field(field_number: int, value: int) -> bytes:
    """A scalar varint field; empty for 0 (proto3 default, not written)."""
    if value == 0:
        return b""
    return varint(field_number << 3 | _WIRE_VARINT) + varint(value)
