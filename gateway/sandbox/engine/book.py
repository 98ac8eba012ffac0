"""Price-time priority book of one pair: sorted price levels, FIFO queues of order ids."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from decimal import Decimal


class SideBook:
    def __init__(self, bids: bool) -> None:
        self.bids = bids
        self.prices: list[Decimal] = []  # ascending
        self.queues: dict[Decimal, deque[int]] = {}
        self.sizes: dict[Decimal, Decimal] = {}

    def add(self, price: Decimal, order_id: int, size: Decimal) -> None:
        if price not in self.queues:
            bisect.insort(self.prices, price)
            self.queues[price] = deque()
            self.sizes[price] = Decimal(0)
        self.queues[price].append(order_id)
        self.sizes[price] += size

    def reduce(self, price: Decimal, size: Decimal) -> None:
        self.sizes[price] -= size

    def remove(self, price: Decimal, order_id: int, size: Decimal) -> None:
        queue = self.queues[price]
        queue.remove(order_id)
        self.sizes[price] -= size
        if not queue:
            self._drop(price)

    def pop_front(self, price: Decimal) -> None:
        self.queues[price].popleft()
        if not self.queues[price]:
            self._drop(price)

    def _drop(self, price: Decimal) -> None:
        del self.queues[price]
        del self.sizes[price]
        del self.prices[bisect.bisect_left(self.prices, price)]

    def best(self) -> Decimal | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.bids else self.prices[0]

    def levels(self) -> Iterator[Decimal]:
        return reversed(self.prices) if self.bids else iter(self.prices)

    def view(self, limit: int | None) -> list[tuple[Decimal, Decimal]]:
        out: list[tuple[Decimal, Decimal]] = []
        for price in self.levels():
            if limit is not None and len(out) >= limit:
                break
            out.append((price, self.sizes[price]))
        return out


class PairBook:
    def __init__(self) -> None:
        self.bids = SideBook(bids=True)
        self.asks = SideBook(bids=False)

    def side(self, order_side: str) -> SideBook:
        return self.bids if order_side == "BUY" else self.asks

    def opposite(self, order_side: str) -> SideBook:
        return self.asks if order_side == "BUY" else self.bids
