"""RedisIntents: PlaceOrder idempotency keys shared by every member of a fleet.

One hash per intent, named by the SHA-256 of (caller, account, client_order_id) so keys hold no
caller data. Creation is one atomic Lua script (create-if-absent, else return what is there), so
two members receiving the same retry at once cannot both send. An intent in flight carries a lease
(the first attempt's deadline plus a margin, in Redis server time): if its member dies, the lease
runs out and a retry re-checks ALP's order list instead of waiting forever or sending again.

Redis trouble never doubles an order: without the store an intent cannot be checked, so
`begin` raises IdempotencyUnavailable (nothing was sent; safe to retry); a failure while recording
an outcome is logged and the caller still gets the truth.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from redis.asyncio import Redis

from gateway.cluster.redis_conn import REDIS_ERRORS
from gateway.core.idempotency import DEFAULT_WINDOW_S, Decision, Key, State, decide
from gateway.core.reconcile import Mark
from gateway.errors import IdempotencyUnavailable
from gateway.exchange.order_intents import IntentView

log = logging.getLogger(__name__)

PREFIX = "alpgw:intent:"
CLAIMED = "alpgw:claimed:"
POLL_S = 0.05
LEASE_MARGIN_S = 5.0
REDIS_FAILURES = REDIS_ERRORS  # what a call to an unreachable or failing Redis raises

# KEYS[1] intent; ARGV: fingerprint, created (wall s), ttl ms, lease ms
_BEGIN = """
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'in_flight', 'created', ARGV[2],
             'lease_until', string.format('%d', now_ms + tonumber(ARGV[4])))
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'proceed', tostring(now_ms)}
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, tostring(now_ms))
table.insert(out, 1, 'existing')
return out
"""


# KEYS[1] intent; ARGV: field, value, field, value... Records only on an intent that exists: one
# another member forgot (verified absent) must not come back as a hash without fingerprint or TTL.
_RECORD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


def _whole_ms(text: str) -> int:
    """A Redis-side millisecond count (whole digits; an intent written by an older member may
    carry Lua's "%.14g" form): exact, never through a float."""
    try:
        return int(Decimal(text))
    except (ArithmeticError, ValueError):
        return 0  # unreadable: treated as run out, which only ever leads to a re-check


def redis_key(key: Key) -> str:
    return PREFIX + hashlib.sha256("\x1f".join(key).encode()).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ids(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _view(fields: dict[str, str]) -> IntentView:
    mark_raw = fields.get("mark")
    mark = None
    if mark_raw:
        data = json.loads(mark_raw)
        mark = Mark(data["newest_id"], float(data["sent_at"]), float(data["skew_s"]))
    state = {"placed": State.PLACED, "unknown": State.UNKNOWN}.get(
        fields.get("state", ""), State.IN_FLIGHT
    )
    ended = fields.get("ended_at")
    return IntentView(
        fields.get("fp", ""),
        state,
        _ids(fields.get("ids", "")),
        fields.get("reconciled") == "1",
        _ids(fields.get("candidates", "")),
        mark,
        float(ended) if ended else None,
    )


class RedisIntents:
    def __init__(
        self,
        redis: Redis,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        lease_s: float = 30.0,
    ) -> None:
        self._redis = redis
        self._window_ms = int(window_s * 1000)
        self._lease_ms = int((lease_s + LEASE_MARGIN_S) * 1000)
        self._begin = redis.register_script(_BEGIN)
        self._record_script = redis.register_script(_RECORD)
        self.degraded = False  # the last read of the store failed

    def __repr__(self) -> str:
        return "RedisIntents()"

    async def begin(
        self, key: Key, fingerprint: str, now: float, *, lease_s: float = 0.0
    ) -> tuple[Decision, IntentView]:
        """`lease_s`: how long the first attempt may still run (the caller's remaining time); its
        in-flight lease covers that plus a margin, so no other member calls it gone meanwhile."""
        lease_ms = self._lease_ms
        if lease_s > 0:
            lease_ms = max(lease_ms, int((lease_s + LEASE_MARGIN_S) * 1000))
        try:
            reply: list[Any] = await self._begin(
                keys=[redis_key(key)],
                args=[fingerprint, repr(now), self._window_ms, lease_ms],
            )
        except REDIS_FAILURES as exc:
            self.degraded = True
            raise IdempotencyUnavailable(type(exc).__name__) from exc
        self.degraded = False
        words = [_text(w) if isinstance(w, bytes | str) else str(w) for w in reply]
        if words[0] == "proceed":
            return Decision.PROCEED, IntentView(fingerprint, State.IN_FLIGHT)
        server_ms = int(words[1])
        fields = dict(zip(words[2::2], words[3::2], strict=True))
        view = _view(fields)
        # a lease run out: the member that sent it is gone (or hung): look at ALP's list,
        # never send again
        gone = server_ms > _whole_ms(fields.get("lease_until", "0"))
        return decide(view.fingerprint, view.state, fingerprint, sender_gone=gone), view

    async def _record(self, key: Key, what: str, fields: Mapping[str, str]) -> None:
        pairs = [part for item in fields.items() for part in item]
        try:
            await self._record_script(keys=[redis_key(key)], args=pairs)
        except REDIS_FAILURES as exc:
            log.error("intent store: cannot record %s (%s)", what, type(exc).__name__)

    async def set_mark(self, key: Key, mark: Mark) -> None:
        data = {"newest_id": mark.newest_id, "sent_at": mark.sent_at, "skew_s": mark.skew_s}
        await self._record(key, "the mark", {"mark": json.dumps(data)})

    async def placed(self, key: Key, order_ids: tuple[int, ...], *, reconciled: bool) -> None:
        await self._record(
            key,
            "a placed order",
            {
                "state": "placed",
                "ids": ",".join(map(str, order_ids)),
                "reconciled": "1" if reconciled else "0",
            },
        )

    async def unknown(self, key: Key, candidates: tuple[int, ...], ended_at: float) -> None:
        await self._record(
            key,
            "an unknown outcome",
            {
                "state": "unknown",
                "candidates": ",".join(map(str, candidates)),
                "ended_at": repr(ended_at),
            },
        )

    async def forget(self, key: Key) -> None:
        try:
            await self._redis.delete(redis_key(key))
        except REDIS_FAILURES as exc:
            log.error("intent store: cannot forget an intent (%s)", type(exc).__name__)

    async def get(self, key: Key) -> IntentView | None:
        try:
            raw = await self._redis.hgetall(redis_key(key))
        except REDIS_FAILURES as exc:
            raise IdempotencyUnavailable(type(exc).__name__) from exc
        if not raw:
            return None
        return _view({_text(k): _text(v) for k, v in raw.items()})

    async def wait_change(self, key: Key, timeout_s: float) -> None:
        """Poll until the intent left IN_FLIGHT (any member may end it) or the time is up."""
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, timeout_s)
        while loop.time() < until:
            await asyncio.sleep(min(POLL_S, max(0.0, until - loop.time())))
            try:
                state = await self._redis.hget(redis_key(key), "state")
            except REDIS_FAILURES:
                continue
            if state != b"in_flight":
                return

    async def claim(self, account: str, order_ids: tuple[int, ...]) -> None:
        name = CLAIMED + account
        try:
            await self._redis.sadd(name, *map(str, order_ids))
            await self._redis.pexpire(name, self._window_ms)
        except REDIS_FAILURES as exc:
            log.error("intent store: cannot claim order ids (%s)", type(exc).__name__)

    async def claimed(self, account: str) -> set[int]:
        try:
            members = await self._redis.smembers(CLAIMED + account)
        except REDIS_FAILURES:
            return set()
        return {int(m) for m in members}
