"""Where PlaceOrder intents live: the IntentStore protocol and its in-process implementation.

The OrderDesk only talks to an IntentStore, so the idempotency keys can live in this process
(`LocalIntents`, the default) or in Redis for a fleet (`gateway.cluster.intents.RedisIntents`)
without the desk changing. Times are wall-clock Unix seconds so members can compare them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from gateway.core.idempotency import DEFAULT_WINDOW_S, Decision, IdempotencyStore, Key, State
from gateway.core.reconcile import Mark

CLAIMED_PER_ACCOUNT = 10_000  # ids answered to callers, never a candidate for another intent


@dataclass(frozen=True)
class IntentView:
    fingerprint: str
    state: State
    order_ids: tuple[int, ...] = ()
    reconciled: bool = False
    candidates: tuple[int, ...] = ()
    mark: Mark | None = None
    ended_at: float | None = None  # wall clock, when it ended unknown


class IntentStore(Protocol):
    async def begin(
        self, key: Key, fingerprint: str, now: float, *, lease_s: float = 0.0
    ) -> tuple[Decision, IntentView]:
        """Create the intent (PROCEED) or say what the existing one means for this request;
        `lease_s` is how long the first attempt may still run (stores with leases honour it)."""
        ...

    async def set_mark(self, key: Key, mark: Mark) -> None: ...

    async def placed(self, key: Key, order_ids: tuple[int, ...], *, reconciled: bool) -> None: ...

    async def unknown(self, key: Key, candidates: tuple[int, ...], ended_at: float) -> None: ...

    async def forget(self, key: Key) -> None: ...

    async def get(self, key: Key) -> IntentView | None: ...

    async def wait_change(self, key: Key, timeout_s: float) -> None:
        """Return when the intent changed state (or after `timeout_s`)."""
        ...

    async def claim(self, account: str, order_ids: tuple[int, ...]) -> None: ...

    async def claimed(self, account: str) -> set[int]: ...


class LocalIntents:
    """Intents of this process (the pure IdempotencyStore) with in-process change events."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.store = IdempotencyStore(window_s)
        self._changed: dict[Key, asyncio.Event] = {}
        self._claimed: dict[str, deque[int]] = {}

    def _signal(self, key: Key) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    def _view(self, key: Key) -> IntentView | None:
        intent = self.store.get(key)
        if intent is None:
            return None
        mark = intent.extra.get("mark")
        ended_at = intent.extra.get("ended_at")
        return IntentView(
            intent.fingerprint,
            intent.state,
            intent.order_ids,
            intent.reconciled,
            intent.candidates,
            mark if isinstance(mark, Mark) else None,
            ended_at if isinstance(ended_at, float) else None,
        )

    async def begin(
        self, key: Key, fingerprint: str, now: float, *, lease_s: float = 0.0
    ) -> tuple[Decision, IntentView]:
        decision, _ = self.store.begin(key, fingerprint, now)  # one process: no lease needed
        view = self._view(key)
        assert view is not None
        return decision, view

    async def set_mark(self, key: Key, mark: Mark) -> None:
        intent = self.store.get(key)
        if intent is not None:
            intent.extra["mark"] = mark

    async def placed(self, key: Key, order_ids: tuple[int, ...], *, reconciled: bool) -> None:
        if self.store.get(key) is not None:
            self.store.placed(key, order_ids, reconciled=reconciled)
        self._signal(key)

    async def unknown(self, key: Key, candidates: tuple[int, ...], ended_at: float) -> None:
        intent = self.store.get(key)
        if intent is not None:
            self.store.unknown(key, candidates)
            intent.extra["ended_at"] = ended_at
        self._signal(key)

    async def forget(self, key: Key) -> None:
        self.store.forget(key)
        self._signal(key)

    async def get(self, key: Key) -> IntentView | None:
        return self._view(key)

    async def wait_change(self, key: Key, timeout_s: float) -> None:
        event = self._changed.setdefault(key, asyncio.Event())
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            return

    async def claim(self, account: str, order_ids: tuple[int, ...]) -> None:
        self._claimed.setdefault(account, deque(maxlen=CLAIMED_PER_ACCOUNT)).extend(order_ids)

    async def claimed(self, account: str) -> set[int]:
        return set(self._claimed.get(account, ()))
