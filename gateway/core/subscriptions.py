"""Subscription table: topic -> reference count -> upstream commands, packed onto connections."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OpenConnection:
    conn_id: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    conn_id: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    conn_id: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CloseConnection:
    conn_id: str


Command = OpenConnection | Subscribe | Unsubscribe | CloseConnection


class SubscriptionTable:
    """Pure bookkeeping; the I/O side executes the returned commands in order.

    The first acquire of a topic subscribes it on the first connection with room (a new one only
    when all are full); the last release schedules an unsubscribe `linger_s` later, cancelled by a
    re-acquire, so bursts of join/leave cause no churn. Empty connections close.
    """

    def __init__(self, *, max_topics_per_connection: int = 20, linger_s: float = 2.0) -> None:
        if max_topics_per_connection < 1:
            raise ValueError("max_topics_per_connection must be >= 1")
        self._max = max_topics_per_connection
        self._linger = linger_s
        self._refs: dict[str, int] = {}
        self._conn_of: dict[str, str] = {}
        self._topics: dict[str, list[str]] = {}  # conn -> topics, in subscription order
        self._lingering: dict[str, float] = {}  # topic -> unsubscribe deadline
        self._full_until: dict[str, int] = {}  # conn -> capacity learned from "Too many topics"
        self._next_id = 1

    def refcount(self, topic: str) -> int:
        return self._refs.get(topic, 0)

    def topics_of(self, conn_id: str) -> tuple[str, ...]:
        return tuple(self._topics.get(conn_id, ()))

    def connections(self) -> dict[str, tuple[str, ...]]:
        return {conn: tuple(topics) for conn, topics in self._topics.items()}

    def next_deadline(self) -> float | None:
        return min(self._lingering.values(), default=None)

    def _capacity(self, conn_id: str) -> int:
        return min(self._max, self._full_until.get(conn_id, self._max))

    def _place(self, topic: str, exclude: str | None = None) -> list[Command]:
        for conn, topics in self._topics.items():
            if conn != exclude and len(topics) < self._capacity(conn):
                topics.append(topic)
                self._conn_of[topic] = conn
                return [Subscribe(conn, (topic,))]
        conn = f"pub-{self._next_id}"
        self._next_id += 1
        self._topics[conn] = [topic]
        self._conn_of[topic] = conn
        return [OpenConnection(conn), Subscribe(conn, (topic,))]

    def acquire(self, topic: str, now: float) -> list[Command]:
        count = self._refs.get(topic, 0)
        self._refs[topic] = count + 1
        if topic in self._lingering:  # still subscribed upstream: keep it
            del self._lingering[topic]
            return []
        if count > 0:
            return []
        return self._place(topic)

    def release(self, topic: str, now: float) -> list[Command]:
        count = self._refs.get(topic, 0)
        if count <= 0:
            raise ValueError(f"release of {topic!r} which is not acquired")
        if count > 1:
            self._refs[topic] = count - 1
            return []
        del self._refs[topic]
        if self._linger <= 0:
            return self._drop(topic)
        self._lingering[topic] = now + self._linger
        return []

    def due(self, now: float) -> list[Command]:
        commands: list[Command] = []
        for topic in [t for t, deadline in self._lingering.items() if deadline <= now]:
            del self._lingering[topic]
            commands.extend(self._drop(topic))
        return commands

    def _drop(self, topic: str) -> list[Command]:
        conn = self._conn_of.pop(topic)
        topics = self._topics[conn]
        topics.remove(topic)
        commands: list[Command] = [Unsubscribe(conn, (topic,))]
        if not topics:
            del self._topics[conn]
            self._full_until.pop(conn, None)
            commands.append(CloseConnection(conn))
        return commands

    def connection_reset(self, conn_id: str) -> list[Command]:
        topics = self.topics_of(conn_id)
        return [Subscribe(conn_id, topics)] if topics else []

    def rejected(self, conn_id: str, topic: str, now: float) -> list[Command]:
        """Upstream refused `topic` as one too many on `conn_id`: move it to another connection."""
        if self._conn_of.get(topic) != conn_id:
            return []
        topics = self._topics[conn_id]
        topics.remove(topic)
        self._full_until[conn_id] = len(topics)
        del self._conn_of[topic]
        commands = self._place(topic, exclude=conn_id)
        if not topics:  # refused its only topic: an empty connection must not stay open
            del self._topics[conn_id]
            self._full_until.pop(conn_id, None)
            commands.append(CloseConnection(conn_id))
        return commands

    def assert_consistent(self) -> None:
        live = set(self._refs) | set(self._lingering)
        placed = [t for topics in self._topics.values() for t in topics]
        assert len(placed) == len(set(placed)), "a topic is on two connections"
        assert set(placed) == live, f"placed {sorted(placed)} != live {sorted(live)}"
        assert all(len(t) <= self._max for t in self._topics.values()), "connection over the max"
        assert all(t for t in self._topics.values()), "empty connection kept open"
        assert all(c > 0 for c in self._refs.values()), "non-positive refcount"
        assert not set(self._refs) & set(self._lingering), "acquired topic still lingering"
