"""JSON for ALP: numbers parse exactly (fractions as Decimal), bodies serialise once, no floats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from gateway.errors import UpstreamProtocolError


def _refuse_constant(name: str) -> Any:
    raise UpstreamProtocolError(f"non-finite number {name} in ALP answer")


def loads_exact(data: bytes | str) -> Any:
    """Parse ALP JSON: 45000.5 -> Decimal("45000.5"), 7 -> 7; NaN/Infinity and bad JSON refused."""
    try:
        return json.loads(data, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, UpstreamProtocolError):
            raise
        raise UpstreamProtocolError(f"ALP answered invalid JSON ({type(exc).__name__})") from exc


def _no_decimal(value: Any) -> Any:
    raise TypeError(f"cannot put {type(value).__name__} in a request body: use decimal strings")


def _refuse_floats(value: Any) -> None:
    # json.dumps encodes floats natively (default= never sees them), so check before encoding.
    if isinstance(value, float):
        raise TypeError("cannot put float in a request body: use decimal strings")
    if isinstance(value, Mapping):
        for item in value.values():
            _refuse_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_floats(item)


def dumps_body(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON in the given key order; the bytes that are signed are the bytes sent."""
    _refuse_floats(obj)
    return json.dumps(
        obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_no_decimal
    ).encode("utf-8")
