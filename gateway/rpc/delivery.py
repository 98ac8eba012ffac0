"""Delivery: one stream consumer's bounded queue, wake-up and adaptive batching into wire messages.

The upstream side calls `offer*` synchronously (never awaiting a consumer). The consumer's handler
iterates `messages()`, which waits while nothing is pending and otherwise drains everything at once
into as few response messages as possible: a run of events becomes one message, a status its own.
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


@dataclass(slots=True, frozen=True)
class _Entry:
    chunk: bytes
    is_status: bool
    events: int = 1


_NO_LOSSLESS: LosslessQueue[Any] = LosslessQueue(1)  # shared, never written (CONFLATE streams)
_NO_CONFLATING: ConflatingQueue[Any] = ConflatingQueue()  # shared, never written (lossless streams)


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
            _NO_LOSSLESS if policy is Policy.CONFLATE else LosslessQueue(limit)
        )
        self._conflating: ConflatingQueue[_Entry] = (
            ConflatingQueue() if policy is Policy.CONFLATE else _NO_CONFLATING
        )
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
        return self._conflated_total + self._conflating.skipped

    def __len__(self) -> int:
        return len(self._conflating) if self.policy is Policy.CONFLATE else len(self._lossless)

    def offer(self, chunk: bytes, key: Hashable = None, events: int = 1) -> None:
        """`events` pre-encoded elements (concatenated); `key` names what a newer event replaces
        (CONFLATE only)."""
        self._push(_Entry(chunk, False, events), key if key is not None else next(_status_keys))

    def offer_status(self, message: bytes) -> None:
        """A whole response message carrying a status; delivered in order, never conflated away."""
        self._push(_Entry(message, True), ("status", next(_status_keys)))

    def _push(self, entry: _Entry, key: Hashable) -> None:
        if self.policy is Policy.CONFLATE:
            self._conflating.offer(key, entry)
        elif not self._lossless.offer(entry, entry.events) and self.policy is Policy.RESNAPSHOT:
            self._restart_from_snapshot()
        self._wake.set()

    def _restart_from_snapshot(self) -> None:
        """The consumer fell too far behind a book: drop its backlog, send a fresh snapshot."""
        assert self._resnapshot is not None
        self._pending_skipped += self._lossless.lost
        self._lossless = LosslessQueue(self._lossless.limit)
        self.resnapshots += 1
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
        if self._lossless.broken:
            raise SlowConsumer(self.channel, self._lossless.lost)
        skipped, self._pending_skipped = self._pending_skipped, 0
        return self._lossless.drain(), skipped

    async def messages(self) -> AsyncIterator[bytes]:
        while True:
            if not len(self) and not self._lossless.broken:
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


__all__ = ["Delivery", "Draining", "Policy"]
