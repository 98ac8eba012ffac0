"""Delivery: one stream consumer's bounded queue, wake-up and adaptive batching into wire messages.

The upstream side calls `offer*` synchronously (never awaiting a consumer). The consumer's handler
iterates `messages()`, which waits while nothing is pending and otherwise drains everything at once
into as few response messages as possible: a run of events becomes one message, a status its own.
A Subscribe stream is one PER_TOPIC Delivery: each of its topics keeps the policy it has alone
(TopicQueue), and each of its order books offers through a Lane of it.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

from gateway.core.fanout_queue import ConflatingQueue, LosslessQueue
from gateway.errors import Draining, SlowConsumer
from gateway.rpc.wire import uint_field

log = logging.getLogger(__name__)

_status_keys = itertools.count()
# gRPC clients refuse messages over 4 MiB by default. Batches aim at MAX_MESSAGE_BYTES (latency,
# memory); MESSAGE_CAP_BYTES is the hard limit no message crosses, margin kept for the envelope.
MAX_MESSAGE_BYTES: Final = 1 << 20
MESSAGE_CAP_BYTES: Final = 4 * 1024 * 1024 - 64 * 1024
_SKIPPED_TAIL_MAX: Final = 11  # uint_field(skipped): one tag byte and at most ten varint bytes


class Policy(enum.Enum):
    LOSSLESS = "lossless"  # every event or the stream ends with RESOURCE_EXHAUSTED
    CONFLATE = "conflate"  # newest per key wins, `skipped` says how many were dropped
    RESNAPSHOT = "resnapshot"  # on overflow, drop the backlog and restart from a fresh snapshot
    PER_TOPIC = "per_topic"  # Subscribe: keyed offers conflate, Lanes resnapshot, the rest lossless


@dataclass(slots=True, frozen=True)
class _Entry:
    chunk: bytes
    is_status: bool
    events: int = 1


class TopicQueue:
    """Subscribe's queue: one arrival order across topics, each topic under its own policy.

    - lossless entries (trades, diffs, order and wallet updates, statuses) count against `limit`;
      overflowing it breaks the queue for good, as a LosslessQueue (the stream must end);
    - a keyed entry (the ticker or depth snapshot of one pair) replaces the pending one of its key
      and moves to the end, so what is delivered is always a subsequence of what arrived, in order;
    - a lane (one order book) keeps its entries in order; the Delivery replaces them all by a fresh
      snapshot once `limit` of them are pending.
    Keyed and lane entries never break the queue: they are bounded by their keys and their lanes.
    """

    __slots__ = ("_items", "_lanes", "_next", "limit", "lost", "size", "skipped")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._items: dict[Hashable, _Entry] = {}  # insertion order is arrival order
        self._lanes: dict[int, list[int]] = {}  # lane -> keys of its pending entries
        self._next = 0  # keys of lossless and lane entries (conflation keys must not be ints)
        self.limit = limit
        self.size = 0  # lossless events pending
        self.lost = 0
        self.skipped = 0  # events replaced or dropped since the last drain

    def offer(self, entry: _Entry) -> bool:
        """A lossless entry; False once the queue overflowed."""
        if self.lost:
            self.lost += entry.events
            return False
        if self.size + entry.events > self.limit:
            self.lost = self.size + entry.events
            self._items.clear()
            self._lanes.clear()
            self.size = 0
            return False
        self._next += 1
        self._items[self._next] = entry
        self.size += entry.events
        return True

    def replace(self, key: Hashable, entry: _Entry) -> None:
        """The newest entry of `key`; a pending older one is dropped and counted."""
        if self.lost:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.skipped += old.events
        self._items[key] = entry

    def lane_size(self, lane: int) -> int:
        return len(self._lanes.get(lane, ()))

    def offer_lane(self, lane: int, entry: _Entry) -> None:
        if self.lost:
            return
        self._next += 1
        self._items[self._next] = entry
        self._lanes.setdefault(lane, []).append(self._next)

    def drop_lane(self, lane: int) -> None:
        """Forget the lane's pending entries (counted as skipped)."""
        for key in self._lanes.pop(lane, ()):
            self.skipped += self._items.pop(key).events

    @property
    def broken(self) -> bool:
        return self.lost > 0

    def drain(self) -> tuple[list[_Entry], int]:
        items = list(self._items.values())
        skipped, self.skipped = self.skipped, 0
        self._items.clear()
        self._lanes.clear()
        self.size = 0
        return items, skipped

    def __len__(self) -> int:
        return len(self._items)


_NO_LOSSLESS: LosslessQueue[Any] = LosslessQueue(1)  # shared, never written (CONFLATE streams)
_NO_CONFLATING: ConflatingQueue[Any] = ConflatingQueue()  # shared, never written (lossless streams)
_NO_TOPICS: TopicQueue = TopicQueue(1)  # shared, never written (single-topic streams)
_lane_ids = itertools.count(1)


class Delivery:
    """A consumer registration. `chunk`s are pre-encoded elements of the response's event field."""

    __slots__ = (
        "_batch_bytes",
        "_cap",
        "_conflated_total",
        "_conflating",
        "_ended",
        "_lossless",
        "_pending_skipped",
        "_resnapshot",
        "_skipped_field",
        "_topics",
        "_wake",
        "channel",
        "delivered_events",
        "delivered_messages",
        "dropped_oversize",
        "policy",
        "resnapshots",
    )

    def __init__(
        self,
        channel: str,
        policy: Policy,
        *,
        limit: int,
        skipped_field: int = 0,
        resnapshot: Callable[[], list[bytes]] | None = None,
        max_message_bytes: int = MESSAGE_CAP_BYTES,
    ) -> None:
        if policy is Policy.RESNAPSHOT and resnapshot is None:
            raise ValueError("RESNAPSHOT needs a resnapshot callback")
        if max_message_bytes <= _SKIPPED_TAIL_MAX:
            raise ValueError("max_message_bytes leaves no room for an event")
        self.channel = channel
        self.policy = policy
        self._skipped_field = skipped_field
        self._resnapshot = resnapshot
        # Only the queue the policy needs: thousands of idle streams make every object count.
        self._lossless: LosslessQueue[_Entry] = (
            LosslessQueue(limit) if policy in (Policy.LOSSLESS, Policy.RESNAPSHOT) else _NO_LOSSLESS
        )
        self._conflating: ConflatingQueue[_Entry] = (
            ConflatingQueue() if policy is Policy.CONFLATE else _NO_CONFLATING
        )
        self._topics = TopicQueue(limit) if policy is Policy.PER_TOPIC else _NO_TOPICS
        self._wake = asyncio.Event()
        self._ended: BaseException | None = None
        self.delivered_messages = 0
        self.delivered_events = 0
        self.resnapshots = 0
        # Entries that alone would exceed the cap. The hub drops (and counts) oversize events
        # before they get here; this is the last line for any other producer.
        self.dropped_oversize = 0
        self._cap = max_message_bytes
        self._batch_bytes = min(MAX_MESSAGE_BYTES, max_message_bytes - _SKIPPED_TAIL_MAX)
        self._pending_skipped = 0
        self._conflated_total = 0

    @property
    def conflated(self) -> int:
        """Events dropped for this consumer by conflation or resnapshots so far."""
        return self._conflated_total + self._conflating.skipped + self._topics.skipped

    def __len__(self) -> int:
        if self.policy is Policy.CONFLATE:
            return len(self._conflating)
        if self.policy is Policy.PER_TOPIC:
            return len(self._topics)
        return len(self._lossless)

    @property
    def _broken(self) -> bool:
        return self._lossless.broken or self._topics.broken

    def offer(self, chunk: bytes, key: Hashable = None, events: int = 1) -> None:
        """`events` pre-encoded elements (concatenated); `key` names what a newer event replaces
        (CONFLATE; PER_TOPIC: with a key it conflates, without it is lossless)."""
        self._push(_Entry(chunk, False, events), key)

    def offer_status(self, message: bytes) -> None:
        """A whole response message carrying a status; delivered in order, never conflated away."""
        self._push(_Entry(message, True), None)

    def _push(self, entry: _Entry, key: Hashable) -> None:
        policy = self.policy
        if policy is Policy.CONFLATE:
            self._conflating.offer(key if key is not None else next(_status_keys), entry)
        elif policy is Policy.PER_TOPIC:
            if key is None or entry.is_status:
                self._topics.offer(entry)
            else:
                self._topics.replace(key, entry)
        elif not self._lossless.offer(entry, entry.events) and policy is Policy.RESNAPSHOT:
            self._restart_from_snapshot(entry)  # (a LOSSLESS overflow breaks the stream)
        self._wake.set()

    def _push_lane(
        self, lane: int, entry: _Entry, resnapshot: Callable[[], list[bytes]] | None
    ) -> None:
        """An order-book entry of a PER_TOPIC stream: in order, unless `limit` of its book's are
        already pending; then they all give way to one fresh snapshot (the entry is in it)."""
        topics = self._topics
        pending = topics.lane_size(lane)
        if resnapshot is not None and pending >= topics.limit:
            try:
                snapshot = resnapshot()
            except Exception:  # not with sane levels; a whole backlog beats a broken book
                if pending == topics.limit:  # once per backlog, not once per update
                    log.exception("stream %s: book resnapshot failed; backlog kept", self.channel)
            else:
                topics.drop_lane(lane)
                topics.skipped += entry.events
                self.resnapshots += 1
                for chunk in snapshot:
                    topics.offer_lane(lane, _Entry(chunk, False))
                self._wake.set()
                return
        topics.offer_lane(lane, entry)
        self._wake.set()

    def _restart_from_snapshot(self, overflowing: _Entry) -> None:
        """The consumer fell too far behind a book: drop its backlog of updates (the overflowing
        one included) for a fresh snapshot. Statuses are no backlog: they stay, in order, ahead of
        it, and only dropped updates count as skipped."""
        assert self._resnapshot is not None
        backlog = [*self._lossless.overflowed, overflowing]
        statuses = [e for e in backlog if e.is_status]
        self._pending_skipped += sum(e.events for e in backlog if not e.is_status)
        self._lossless = LosslessQueue(self._lossless.limit)
        self.resnapshots += 1
        for entry in statuses:
            self._lossless.offer(entry, entry.events)
        for snapshot in self._resnapshot():
            self._lossless.offer(_Entry(snapshot, False))

    def end(self, reason: BaseException) -> None:
        """Finish the stream with `reason` (e.g. Draining) once the pending messages are out."""
        if self._ended is None:
            self._ended = reason
        self._wake.set()

    def _drain(self) -> tuple[list[_Entry], int]:
        if self.policy is Policy.CONFLATE:
            return self._conflating.drain()
        if self.policy is Policy.PER_TOPIC:
            if self._topics.broken:
                raise SlowConsumer(self.channel, self._topics.lost)
            return self._topics.drain()
        if self._lossless.broken:
            raise SlowConsumer(self.channel, self._lossless.lost)
        skipped, self._pending_skipped = self._pending_skipped, 0
        return self._lossless.drain(), skipped

    async def messages(self) -> AsyncIterator[bytes]:
        while True:
            if not len(self) and not self._broken:
                if self._ended is not None:
                    raise self._ended
                self._wake.clear()
                await self._wake.wait()
                continue
            entries, skipped = self._drain()
            self._conflated_total += skipped
            run: list[bytes] = []
            events = size = 0
            for entry in entries:
                if len(entry.chunk) + _SKIPPED_TAIL_MAX > self._cap:
                    self._drop_oversize(entry)
                    continue
                # statuses travel alone; a batch closes before it would pass the batch size, so
                # every message stays under the cap (one entry alone fits, checked above)
                if run and (entry.is_status or size + len(entry.chunk) > self._batch_bytes):
                    yield self._events_message(run, events, skipped)
                    run, events, size, skipped = [], 0, 0, 0
                if entry.is_status:
                    self.delivered_messages += 1
                    yield entry.chunk
                elif entry.chunk:
                    run.append(entry.chunk)
                    events += entry.events
                    size += len(entry.chunk)
            if run:
                yield self._events_message(run, events, skipped)

    def _drop_oversize(self, entry: _Entry) -> None:
        self.dropped_oversize += entry.events
        if self.dropped_oversize == entry.events:  # the first time for this stream
            log.warning(
                "stream %s: a message of %d bytes exceeds the %d-byte message cap; dropped "
                "(%d events; further drops on this stream are counted, not logged)",
                self.channel,
                len(entry.chunk),
                self._cap,
                entry.events,
            )

    def _events_message(self, run: list[bytes], events: int, skipped: int) -> bytes:
        self.delivered_messages += 1
        self.delivered_events += events
        tail = uint_field(self._skipped_field, skipped) if self._skipped_field else b""
        return b"".join(run) + tail


class Lane(Delivery):
    """One order book of a PER_TOPIC (Subscribe) stream, standing in for the book's own Delivery.

    It takes over `own`'s name and resnapshot callback. Its updates go into the parent's one queue,
    in arrival order with the stream's other topics, under the book's own policy: a book `limit`
    updates behind is replaced by a fresh snapshot, as in StreamOrderBook, and never ends the
    stream. Statuses and `end` go to the parent. A Lane holds nothing: read the parent."""

    __slots__ = ("_lane", "_parent")

    def __init__(self, parent: Delivery, own: Delivery) -> None:
        if parent.policy is not Policy.PER_TOPIC:
            raise ValueError("a Lane belongs to a PER_TOPIC delivery")
        if own.policy is not Policy.RESNAPSHOT:
            raise ValueError("a Lane stands in for a RESNAPSHOT delivery")
        super().__init__(own.channel, Policy.RESNAPSHOT, limit=1, resnapshot=own._resnapshot)
        self._parent = parent
        self._lane = next(_lane_ids)

    def _push(self, entry: _Entry, key: Hashable) -> None:
        if entry.is_status:
            self._parent._push(entry, None)
        else:
            self._parent._push_lane(self._lane, entry, self._resnapshot)

    def end(self, reason: BaseException) -> None:
        self._parent.end(reason)


__all__ = ["Delivery", "Draining", "Lane", "Policy", "TopicQueue"]
