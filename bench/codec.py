"""Benchmark: exact WebSocket frame decoding (issue "ALP as documented": numbers never via float).

    .venv/bin/python -m bench.codec [--frames 20000 --repeats 5]

Runs the full `gateway.core.ws_codec.decode_frame` on the docs' frames (trade, ticker, depth,
order update) with three JSON parsers swapped in, in the same run:
- shipped: msgspec with `float_hook=Decimal` (JSON numbers straight from their text to Decimal),
- previous: orjson (JSON numbers become floats, turned into Decimal through repr()), if orjson
  is installed (it is no longer a dependency),
- stdlib `json.loads(parse_float=Decimal)` (exact, the slow reference).
Reports microseconds per frame (best of the repeats) and ratios to the shipped parser.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gateway.core import ws_codec

FRAMES = {
    "trade": '["t", 1694003848.123456, 293107798, "BTC_USDT", "0.20285052", "25705.02", "buy"]',
    "ticker": '["tk", 1694003337, '
    + ", ".join(
        f'["P{i}_USDT", "0.50057000", "2036106.67737645", "1024194.48541761", "-0.28287417",'
        ' "0.50677000", "0.49872000", "0.50057000", "0.50117000"]'
        for i in range(7)
    )
    + "]",
    "depth": '["p", 1694178331, {"Asks": ['
    + ", ".join(f'["{26100 + i}.11000000", "0.30200000"]' for i in range(20))
    + '], "Bids": ['
    + ", ".join(f'["{25768 - i}.09000000", "0.05900000"]' for i in range(20))
    + '], "Symbol": "BTC_USDT", "TotalAsks": "6.04", "TotalBids": "1.18"}]',
    "order": '["o", 1694178331, 12345, "BTC_USDT", "ASK", "LIMIT", "0.5", "48000.00", "0.2",'
    ' "0.3", "0.0", "14400.00", "48000.00", 1631386242.567, "FILLED", "14400.00", "SPOT",'
    ' "0.00", ""]',
}


class _Parser:
    """Stands in for ws_codec's JSON decoder, so every path runs the same full frame decode."""

    def __init__(self, loads: Callable[[str], Any]) -> None:
        self.decode = loads


def _floats_to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))  # the previous path: exact only as far as the float was
    if isinstance(value, list):
        return [_floats_to_decimal(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats_to_decimal(v) for k, v in value.items()}
    return value


def _parsers() -> dict[str, Any]:
    parsers: dict[str, Any] = {"shipped: msgspec, numbers -> Decimal": ws_codec._JSON}
    try:
        import orjson

        parsers["previous: orjson -> float -> repr -> Decimal"] = _Parser(
            lambda text: _floats_to_decimal(orjson.loads(text))
        )
    except ImportError:
        pass
    parsers["stdlib: json.loads(parse_float=Decimal)"] = _Parser(
        lambda text: json.loads(text, parse_float=Decimal)
    )
    return parsers


def measure(fn: Callable[[str], Any], text: str, frames: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(frames):
            fn(text)
        best = min(best, time.perf_counter() - started)
    return best / frames * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    parsers = _parsers()
    shipped = next(iter(parsers))
    print(f"full decode_frame, us per frame, best of {args.repeats} x {args.frames} frames")
    for kind, text in FRAMES.items():
        results = {}
        for name, json_parser in parsers.items():
            ws_codec._JSON = json_parser  # type: ignore[misc]  # swap the parser for this run
            results[name] = measure(ws_codec.decode_frame, text, args.frames, args.repeats)
        ws_codec._JSON = parsers[shipped]  # type: ignore[misc]
        for name, micros in results.items():
            print(f"{kind:7s} {name:46s} {micros:7.2f} us  {micros / results[shipped]:5.2f}x")


if __name__ == "__main__":
    main()
