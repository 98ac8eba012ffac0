"""Per-subscriber delivery queues: lossless with a hard bound, or conflating (latest per key wins).

The upstream reader offers events synchronously and never waits on a subscriber; the subscriber's
writer drains everything pending in one go, which is what makes batches adaptive: one event per
message while the consumer keeps up, everything queued when it does not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class LosslessQueue(Generic[T]):
    """Keeps every item; overflowing `limit` breaks the queue and counts the lost items."""

    __slots__ = ("_items", "limit", "lost", "overflowed", "size")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._items: deque[T] = deque()
        self.limit = limit  # in events: an item may carry several (`weight`)
        self.size = 0
        self.lost = 0
        self.overflowed: deque[T] = deque()  # what was queued when it overflowed (not `item`)

    def offer(self, item: T, weight: int = 1) -> bool:
        """False once the queue overflowed: the stream must end, it can no longer be complete."""
        if self.lost:
            self.lost += weight
            return False
        if self.size + weight > self.limit:
            self.lost = self.size + weight
            self.overflowed, self._items = self._items, deque()
            self.size = 0
            return False
        self._items.append(item)
        self.size += weight
        return True

    @property
    def broken(self) -> bool:
        return self.lost > 0

    def drain(self) -> list[T]:
        items = list(self._items)
        self._items.clear()
        self.size = 0
        return items

    def __len__(self) -> int:
        return len(self._items)


class ConflatingQueue(Generic[T]):
    """At most one pending item per key (the newest); `skipped` counts the ones replaced."""

    __slots__ = ("_items", "skipped")

    def __init__(self) -> None:
        self._items: dict[Hashable, T] = {}
        self.skipped = 0

    def offer(self, key: Hashable, item: T) -> bool:
        if key in self._items:
            self.skipped += 1
            del self._items[key]  # re-insert so arrival order reflects the newest value
        self._items[key] = item
        return True

    def drain(self) -> tuple[list[T], int]:
        items = list(self._items.values())
        skipped, self.skipped = self.skipped, 0
        self._items.clear()
        return items, skipped

    def __len__(self) -> int:
        return len(self._items)
