"""Idempotency keys for PlaceOrder (pure): one intent per (caller, account, client_order_id).

Modelled on payment APIs' idempotency keys. The first request with a key runs; while it runs, a
retry waits for it; once it ended, a retry gets the same answer (placed, or unknown with the
same candidates) and never sends a second order. The same key with other order parameters is
refused. A request refused before anything was sent stores nothing, and an intent verified as
not placed is forgotten, so its retry really places. Keys live for `window_s` (default 24 h).
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from gateway.core.decimals import format_decimal
from gateway.core.validation import OrderSpec

DEFAULT_WINDOW_S = 24 * 3600.0
MAX_KEYS = 1_000_000  # a hard bound on memory; the oldest keys go first


def fingerprint(spec: OrderSpec) -> str:
    """A digest of everything that makes the order what it is (not its client_order_id)."""
    parts = [
        spec.pair,
        spec.side.value,
        spec.wallet_type.value,
        spec.order_type.value,
        *(
            "" if v is None else format_decimal(v.normalize())
            for v in (spec.base_amount, spec.quote_amount, spec.limit_price, spec.stop_price)
        ),
        "" if spec.stop_operator is None else spec.stop_operator.value,
        "1" if spec.post_only else "0",
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class State(enum.Enum):
    IN_FLIGHT = "in_flight"
    PLACED = "placed"
    UNKNOWN = "unknown"


@dataclass
class Intent:
    fingerprint: str
    created_at: float
    state: State = State.IN_FLIGHT
    order_ids: tuple[int, ...] = ()
    reconciled: bool = False
    candidates: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)  # the mark, for later lookups


Key = tuple[str, str, str]  # (caller, account, client_order_id)


class Decision(enum.Enum):
    PROCEED = "proceed"  # new intent: send the order
    WAIT = "wait"  # the first attempt is still running
    REPLAY = "replay"  # answer what the first attempt answered
    RECHECK = "recheck"  # the first attempt ended unknown: look again, never send
    CONFLICT = "conflict"  # same key, other parameters


def decide(stored: str, state: State, fingerprint_: str, *, sender_gone: bool = False) -> Decision:
    """What a request with `fingerprint_` does about the intent already stored under its key:
    another order under the same key is a CONFLICT; a placed one is REPLAYED; one whose outcome
    is unknown, or whose sender is gone while in flight, is RECHECKED against ALP; one still in
    flight is WAITED for. One rule for this process's store and the fleet's (cluster/intents)."""
    if stored != fingerprint_:
        return Decision.CONFLICT
    if state is State.PLACED:
        return Decision.REPLAY
    if state is State.IN_FLIGHT and not sender_gone:
        return Decision.WAIT
    return Decision.RECHECK


class IdempotencyStore:
    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_keys: int = MAX_KEYS) -> None:
        if window_s <= 0 or max_keys < 1:
            raise ValueError("window_s must be > 0 and max_keys >= 1")
        self._window = window_s
        self._max = max_keys
        self._intents: OrderedDict[Key, Intent] = OrderedDict()

    def __len__(self) -> int:
        return len(self._intents)

    def get(self, key: Key) -> Intent | None:
        return self._intents.get(key)

    def begin(self, key: Key, print_: str, now: float) -> tuple[Decision, Intent]:
        self._expire(now)
        intent = self._intents.get(key)
        if intent is None:
            intent = Intent(print_, now)
            self._intents[key] = intent
            while len(self._intents) > self._max:
                self._intents.popitem(last=False)
            return Decision.PROCEED, intent
        return decide(intent.fingerprint, intent.state, print_), intent

    def placed(self, key: Key, order_ids: tuple[int, ...], *, reconciled: bool) -> None:
        intent = self._intents[key]
        intent.state, intent.order_ids, intent.reconciled = State.PLACED, order_ids, reconciled
        intent.candidates = ()

    def unknown(self, key: Key, candidates: tuple[int, ...]) -> None:
        intent = self._intents[key]
        intent.state, intent.candidates = State.UNKNOWN, candidates

    def forget(self, key: Key) -> None:
        """Nothing was placed (refused upstream, or verified absent): a retry may place."""
        self._intents.pop(key, None)

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._intents:
            key, intent = next(iter(self._intents.items()))
            if intent.created_at > horizon or intent.state is State.IN_FLIGHT:
                return
            del self._intents[key]
