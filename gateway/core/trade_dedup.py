"""Trade de-duplication: drop a trade only when that exact trade was already delivered.

A pair's trades arrive twice when both `trade.*` and `trade.PAIR` are subscribed. Ids are not a
sequence to police: a lower id than the newest (a restarted upstream, an out-of-order frame, one
hostile id of 2^62) is delivered and counted as a regression, never used to drop what follows.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

WINDOW: Final = 4096  # ids remembered per pair; duplicates arrive within milliseconds


class TradeDedup:
    def __init__(self, window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._seen: dict[str, OrderedDict[int, None]] = {}
        self._newest: dict[str, int] = {}
        self.duplicates = 0
        self.regressions = 0

    def seen(self, pair: str, trade_id: int) -> bool:
        """True (and counted) if this exact trade was delivered already; else remember it."""
        ids = self._seen.setdefault(pair, OrderedDict())
        if trade_id in ids:
            self.duplicates += 1
            return True
        newest = self._newest.get(pair)
        if newest is not None and trade_id < newest:
            self.regressions += 1
        else:
            self._newest[pair] = trade_id
        ids[trade_id] = None
        if len(ids) > self._window:
            ids.popitem(last=False)
        return False

    def reset(self) -> None:
        """The upstream connection was lost: ids seen before say nothing about what comes next."""
        self._seen.clear()
        self._newest.clear()
