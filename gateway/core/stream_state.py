"""Upstream topic states as consumers see them, and the pure bookkeeping that decides them."""

from __future__ import annotations

import enum
from collections.abc import Iterable

Notice = tuple["StreamState", tuple[str, ...]]


class StreamState(enum.StrEnum):
    SUBSCRIBED = "subscribed"  # upstream acknowledged the topic
    RECONNECTING = "reconnecting"  # its connection was lost: events may be missing from here on
    RESYNCED = "resynced"  # acknowledged again after a loss


class TopicStates:
    """Which topics are live upstream and which await their ack after a reconnect.

    Feed drivers report what happened (lost, acknowledged, unsubscribed, refused) and pass the
    returned notices to the topics' listeners, in order.
    """

    def __init__(self) -> None:
        self._live: set[str] = set()
        self._resyncing: set[str] = set()

    def is_live(self, topic: str) -> bool:
        return topic in self._live

    def lost(self, topics: Iterable[str]) -> list[Notice]:
        lost = tuple(topics)
        self._live.difference_update(lost)
        self._resyncing.update(lost)
        return [(StreamState.RECONNECTING, lost)] if lost else []

    def is_resyncing(self, topic: str) -> bool:
        return topic in self._resyncing

    def unreachable(self, topics: Iterable[str]) -> list[Notice]:
        """Upstream cannot be reached (or will not log us in) for topics that were never live:
        their consumers hear RECONNECTING once, not silence, and RESYNCED when acknowledged."""
        waiting = tuple(t for t in topics if t not in self._live and t not in self._resyncing)
        self._resyncing.update(waiting)
        return [(StreamState.RECONNECTING, waiting)] if waiting else []

    def acknowledged(self, topics: Iterable[str]) -> list[Notice]:
        acked = tuple(topics)
        self._live.update(acked)
        resynced = tuple(t for t in acked if t in self._resyncing)
        fresh = tuple(t for t in acked if t not in self._resyncing)
        self._resyncing.difference_update(resynced)
        notices: list[Notice] = []
        if resynced:
            notices.append((StreamState.RESYNCED, resynced))
        if fresh:
            notices.append((StreamState.SUBSCRIBED, fresh))
        return notices

    def unsubscribed(self, topics: Iterable[str]) -> None:
        self._live.difference_update(topics)

    def refused(self, topic: str) -> None:
        self._live.discard(topic)
        self._resyncing.discard(topic)


def coalesce(notices: Iterable[Notice]) -> list[Notice]:
    """The notices of one batch (one lease tick) as few as possible, each topic's story kept:
    first every topic whose story starts with a loss (one RECONNECTING), then each topic's final
    live state (SUBSCRIBED or RESYNCED), then topics that end lost after being live. A book whose
    depth and diff topics are handed over together hears RECONNECTING and RESYNCED once each."""
    first: dict[str, StreamState] = {}
    last: dict[str, StreamState] = {}
    for state, topics in notices:
        for topic in topics:
            first.setdefault(topic, state)
            last[topic] = state
    lost = StreamState.RECONNECTING
    phases = [
        (lost, tuple(t for t, s in first.items() if s is lost)),
        *(
            (state, tuple(t for t, s in last.items() if s is state))
            for state in (StreamState.RESYNCED, StreamState.SUBSCRIBED)
        ),
        (lost, tuple(t for t, s in last.items() if s is lost and first[t] is not lost)),
    ]
    return [(state, topics) for state, topics in phases if topics]
