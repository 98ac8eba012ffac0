"""The maintained order book of one pair: exact levels, validated updates, minimal change sets."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Level = tuple[Decimal, Decimal]
SideName = Literal["bid", "ask"]


@dataclass(frozen=True, slots=True)
class LevelChange:
    side: SideName
    price: Decimal
    amount: Decimal  # 0 = remove the level


class BookInconsistent(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Side:
    """Price -> amount with a sorted key list; `descending` for bids."""

    __slots__ = ("descending", "keys", "levels")

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self.levels: dict[Decimal, Decimal] = {}
        self.keys: list[Decimal] = []  # ascending; bids read it reversed

    def set(self, price: Decimal, amount: Decimal) -> None:
        if amount == 0:
            if price in self.levels:
                del self.levels[price]
                index = bisect.bisect_left(self.keys, price)
                del self.keys[index]
            return
        if price not in self.levels:
            bisect.insort(self.keys, price)
        self.levels[price] = amount

    def best(self) -> Level | None:
        if not self.keys:
            return None
        price = self.keys[-1] if self.descending else self.keys[0]
        return price, self.levels[price]

    def top(self, depth: int | None) -> list[Level]:
        keys = reversed(self.keys) if self.descending else iter(self.keys)
        out: list[Level] = []
        for price in keys:
            if depth is not None and len(out) >= depth:
                break
            out.append((price, self.levels[price]))
        return out


class OrderBook:
    def __init__(self, pair: str) -> None:
        self.pair = pair
        self._bids = _Side(descending=True)
        self._asks = _Side(descending=False)

    def __len__(self) -> int:
        return len(self._bids.levels) + len(self._asks.levels)

    def bids(self, depth: int | None = None) -> list[Level]:
        return self._bids.top(depth)

    def asks(self, depth: int | None = None) -> list[Level]:
        return self._asks.top(depth)

    def best_bid(self) -> Level | None:
        return self._bids.best()

    def best_ask(self) -> Level | None:
        return self._asks.best()

    def is_crossed(self) -> bool:
        bid, ask = self.best_bid(), self.best_ask()
        return bid is not None and ask is not None and bid[0] >= ask[0]

    @staticmethod
    def _checked(levels: Iterable[Level], side: str) -> dict[Decimal, Decimal]:
        out: dict[Decimal, Decimal] = {}
        for price, amount in levels:
            if price <= 0 or amount < 0:
                raise BookInconsistent(f"{side} level {price} x {amount} is not a valid level")
            if amount > 0:
                out[price] = amount
        return out

    def reset(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        self.apply_snapshot(bids, asks)

    def apply_snapshot(self, bids: Iterable[Level], asks: Iterable[Level]) -> list[LevelChange]:
        """Replace the content; returns the minimal changes from the old book to the new one."""
        new_bids = self._checked(bids, "bid")
        new_asks = self._checked(asks, "ask")
        if new_bids and new_asks and max(new_bids) >= min(new_asks):
            raise BookInconsistent("snapshot is crossed")
        changes: list[LevelChange] = []
        for name, side, new in (("bid", self._bids, new_bids), ("ask", self._asks, new_asks)):
            for price in [p for p in side.levels if p not in new]:
                side.set(price, Decimal(0))
                changes.append(LevelChange(name, price, Decimal(0)))  # type: ignore[arg-type]
            for price, amount in new.items():
                if side.levels.get(price) != amount:
                    side.set(price, amount)
                    changes.append(LevelChange(name, price, amount))  # type: ignore[arg-type]
        return changes

    def apply_diff(
        self, bid_deltas: Iterable[Level], ask_deltas: Iterable[Level]
    ) -> list[LevelChange]:
        """Quantity differences: new = old + delta, 0 removes. Validated first; on any problem the
        book is left unchanged and BookInconsistent says why."""
        planned: list[tuple[SideName, _Side, Decimal, Decimal]] = []
        for name, side, deltas in (
            ("bid", self._bids, bid_deltas),
            ("ask", self._asks, ask_deltas),
        ):
            pending: dict[Decimal, Decimal] = {}
            for price, delta in deltas:
                if price <= 0:
                    raise BookInconsistent(f"{name} price {price} is not positive")
                old = pending.get(price, side.levels.get(price))
                if old is None and delta < 0:
                    raise BookInconsistent(f"negative {name} diff at missing level {price}")
                new = (old or Decimal(0)) + delta
                if new < 0:
                    raise BookInconsistent(f"{name} level {price} would become {new}")
                pending[price] = new
            planned.extend((name, side, p, a) for p, a in pending.items())  # type: ignore[misc]
        best_bid = self._projected_best(planned, "bid")
        best_ask = self._projected_best(planned, "ask")
        if best_bid is not None and best_ask is not None and best_bid >= best_ask:
            raise BookInconsistent(f"diff would cross the book ({best_bid} >= {best_ask})")
        changes = []
        for name, side, price, amount in planned:
            if side.levels.get(price, Decimal(0)) != amount:
                side.set(price, amount)
                changes.append(LevelChange(name, price, amount))
        return changes

    def _projected_best(
        self, planned: list[tuple[SideName, _Side, Decimal, Decimal]], name: SideName
    ) -> Decimal | None:
        side = self._bids if name == "bid" else self._asks
        overrides = {p: a for n, _, p, a in planned if n == name}
        candidates = [p for p, a in overrides.items() if a > 0]
        for price in reversed(side.keys) if side.descending else side.keys:
            if overrides.get(price, side.levels[price]) > 0:
                candidates.append(price)
                break
        if not candidates:
            return None
        return max(candidates) if side.descending else min(candidates)


def apply_changes(
    bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal], changes: Iterable[LevelChange]
) -> None:
    """What a consumer does with a change message (used by tests to prove equality)."""
    for change in changes:
        side = bids if change.side == "bid" else asks
        if change.amount == 0:
            side.pop(change.price, None)
        else:
            side[change.price] = change.amount
