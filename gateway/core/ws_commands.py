"""Which of our WebSocket commands an upstream answer belongs to (pure; the feeds drive it).

ALP's error frames rarely say what they answer: the docs' `["error", ts, "Topic does not exist"]`
names neither topic nor command, the live `["error", ts, "Too many topics", "subscribe"]` names the
command only. ALP answers one connection's commands in order, so the oldest unanswered subscribe
frame on that connection is the one an error refers to. Errors that answer nothing of ours (a
notice that merely mentions a topic, an error about an unsubscribe) end nothing: they are counted.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass


class ErrorKind(enum.Enum):
    TOO_MANY_TOPICS = "too_many_topics"  # the frame was refused whole: place it elsewhere
    TOPIC_NOT_FOUND = "topic_not_found"  # "Topic does not exist": the pair is not listed
    TOPIC_INVALID = "topic_invalid"  # "Invalid topic: X": malformed
    AUTH_REFUSED = "auth_refused"  # the answer to ["auth", jwt]
    OTHER = "other"  # answers nothing we can name: log and count only


_SUBSCRIBE_ERRORS = (
    ("too many topics", ErrorKind.TOO_MANY_TOPICS),
    ("topic does not exist", ErrorKind.TOPIC_NOT_FOUND),
    ("invalid topic", ErrorKind.TOPIC_INVALID),
)


def classify_error(message: str, command: str | None, *, auth_pending: bool = False) -> ErrorKind:
    """What an error frame answers, from its message and the command it names (if any)."""
    if command == "auth":
        return ErrorKind.AUTH_REFUSED
    if command not in (None, "subscribe"):
        return ErrorKind.OTHER
    text = message.strip().lower()
    for prefix, kind in _SUBSCRIBE_ERRORS:
        if text.startswith(prefix):
            return kind
    if command is None and auth_pending and any(w in text for w in ("token", "auth", "unauth")):
        return ErrorKind.AUTH_REFUSED
    return ErrorKind.OTHER


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: ErrorKind
    topics: tuple[str, ...]  # the refused frame's topics still unanswered; () if none matched


class PendingSubscribes:
    """Subscribe frames sent on each connection and not answered yet, oldest first."""

    def __init__(self) -> None:
        self._pending: dict[str, deque[list[str]]] = {}

    def sent(self, conn_id: str, topics: tuple[str, ...] | list[str]) -> None:
        if topics:
            self._pending.setdefault(conn_id, deque()).append(list(topics))

    def acknowledged(self, conn_id: str, topics: tuple[str, ...]) -> None:
        """An ack answers the frames that carried these topics (all of them, oldest first)."""
        frames = self._pending.get(conn_id)
        if not frames:
            return
        acked = set(topics)
        for frame in frames:
            frame[:] = [t for t in frame if t not in acked]
        while frames and not frames[0]:
            frames.popleft()
        self._pending[conn_id] = deque(f for f in frames if f)

    def refused(self, conn_id: str, kind: ErrorKind, echoed: tuple[str, ...] = ()) -> Refusal:
        """An error answering a subscribe: the oldest pending frame (or the echoed topics)."""
        frames = self._pending.get(conn_id)
        if echoed:
            if frames:
                self.acknowledged(conn_id, echoed)
            return Refusal(kind, echoed)
        if not frames:
            return Refusal(kind, ())
        return Refusal(kind, tuple(frames.popleft()))

    def in_flight(self, conn_id: str) -> int:
        return sum(len(f) for f in self._pending.get(conn_id, ()))

    def reset(self, conn_id: str) -> None:
        """The connection dropped: nothing on it will be answered any more."""
        self._pending.pop(conn_id, None)
