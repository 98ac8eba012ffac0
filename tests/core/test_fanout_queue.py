"""Delivery queues: lossless never drops silently; conflating keeps the newest per key and counts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.fanout_queue import ConflatingQueue, LosslessQueue


def test_lossless_keeps_order_until_overflow() -> None:
    queue: LosslessQueue[int] = LosslessQueue(3)
    assert all(queue.offer(i) for i in range(3))
    assert queue.drain() == [0, 1, 2]
    assert all(queue.offer(i) for i in range(3))
    assert not queue.offer(99)
    assert queue.broken and queue.lost == 4
    assert not queue.offer(100)
    assert queue.lost == 5
    assert queue.drain() == []


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers()), max_size=100))
def test_conflating_keeps_newest_per_key(items: list[tuple[str, int]]) -> None:
    queue: ConflatingQueue[int] = ConflatingQueue()
    for key, value in items:
        queue.offer(key, value)
    drained, skipped = queue.drain()
    newest = {}
    for key, value in items:
        newest[key] = value
    assert sorted(drained) == sorted(newest.values())
    assert skipped == len(items) - len(newest)
    assert queue.drain() == ([], 0)


@given(st.integers(1, 50), st.lists(st.integers(), max_size=200))
def test_lossless_counts_every_lost_item(limit: int, items: list[int]) -> None:
    queue: LosslessQueue[int] = LosslessQueue(limit)
    accepted = [i for i in items if queue.offer(i)]
    if len(items) <= limit:
        assert queue.drain() == items
    else:
        assert queue.lost == len(items) - len(accepted) + min(len(accepted), limit)
        assert queue.broken
