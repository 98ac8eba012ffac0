"""RedisBudget: ALP's rate limits as one sliding window per pool that every gateway member shares.

The rule is `gateway.core.rate_limit.SlidingWindow`'s: at most `limit` sends in any interval of
`window_s + margin_s`, READ capped at `limit - trade_reserve`. One Lua script per acquisition
purges, counts and records atomically, timed by the Redis server's own clock (TIME), so members'
clocks do not matter and members joining or leaving change nothing: the window is per pool.

When Redis does not answer, each member falls back to a local window holding its share of the
limit (the limit divided by the live members last seen, ASSUMED_MEMBERS before any count), seeded
with its own recent sends, and pings Redis again at most every `probe_s`. Around an outage the
fleet cannot see what its members sent, so the member stays conservative on both edges: after
losing Redis it sends nothing for one span (the fleet's sends it cannot see age out), and after
Redis answers again (restarted empty, it knows nothing of the sends made alone) it keeps to its
share as well as to the fleet window for one span plus `probe_s`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from dataclasses import dataclass, field

from redis.asyncio import Redis

from gateway.cluster.members import ASSUMED_MEMBERS, FleetMembers
from gateway.cluster.redis_conn import REDIS_ERRORS
from gateway.core.rate_limit import Lane, SlidingWindow

log = logging.getLogger(__name__)

# KEYS[1] the pool's sends: a sorted set, score = send time in microseconds, members unique.
# KEYS[2] the budget's epoch: set once, never expiring; a Redis that lost its data (restarted
# without persistence, flushed) has none, and the script sets a new one.
# ARGV: cap (sends this lane may see in a span), span in microseconds, a unique member,
# and, for tests only, the time in microseconds (production scripts read Redis TIME).
# Returns {0 when the send was recorded, else the milliseconds until it would fit; the epoch}.
ACQUIRE_LUA = """
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = tostring(now) .. ':' .. ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
local cap = tonumber(ARGV[1])
local span = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
local held = redis.call('ZCARD', KEYS[1])
if held < cap then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(span / 1000) + 1000)
  return {0, epoch}
end
local oldest = redis.call('ZRANGE', KEYS[1], held - cap, held - cap, 'WITHSCORES')
return {math.max(1, math.ceil((tonumber(oldest[2]) + span - now) / 1000)), epoch}
"""


def span_us(window: SlidingWindow) -> int:
    """The window's span in whole microseconds (1.0 + 0.1 is 1100000, not 1100001)."""
    return max(1, round(window.span * 1_000_000))


def lane_cap(window: SlidingWindow, lane: Lane) -> int:
    return window.limit - window.trade_reserve if lane is Lane.READ else window.limit


def share_of(window: SlidingWindow, members: int) -> SlidingWindow:
    """An empty window holding one member's share of `window` when `members` split it blind.

    `limit // members` sends in the same span, so the members together stay within the limit;
    with fewer sends than members, one send per member in a span stretched `members / limit`
    times (the average rate holds; within one span more members may send at once).
    """
    n = max(1, members)
    if window.limit == 0 or n == 1:
        return SlidingWindow(window.limit, window.window_s, window.margin_s, window.trade_reserve)
    limit = window.limit // n
    if limit == 0:
        return SlidingWindow(1, window.window_s * n / window.limit, window.margin_s, 0)
    reserve = min(limit - 1, math.ceil(window.trade_reserve * limit / window.limit))
    return SlidingWindow(limit, window.window_s, window.margin_s, reserve)


class BudgetForgotten(Exception):
    """Redis answered without the fleet's recent sends (restarted without persistence): as
    after an outage, this member pauses one span, then keeps to its share for one more."""


_ASK_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, BudgetForgotten)


@dataclass
class _Fallback:
    """This member's recent sends in one pool and the share window built from them."""

    sends: deque[float] = field(default_factory=deque)
    members: int = 0
    window: SlidingWindow | None = None


class RedisBudget:
    """The `gateway.exchange.limiter.SharedBudget` of a fleet, kept in Redis.

    Keys: `{namespace}:budget:public` and `{namespace}:budget:account:{name}`. Every member must
    be configured with the same rates (the window's limit travels with each acquisition).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "alp-gateway",
        members: FleetMembers | None = None,
        member_id: str | None = None,
        probe_s: float = 0.5,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._members = members
        self._member = member_id or (members.member_id if members else f"m{id(self):x}")
        self._seq = itertools.count()
        self._script = redis.register_script(ACQUIRE_LUA)
        self._epoch_key = f"{namespace}:budget-epoch"
        self._probe_key = f"{namespace}:budget-probe"
        self._epoch: str | None = None  # the budget's epoch last seen (None: never asked yet)
        self._probe_s = probe_s
        self._locks: dict[str | None, asyncio.Lock] = {}
        self._blocked: dict[tuple[str | None, int], float] = {}  # (pool, lane cap) -> until
        self._fallback: dict[str | None, _Fallback] = {}
        self._down_since: float | None = None
        self._recovered_at: float | None = None
        self._longest_span = 0.0
        self._next_probe = 0.0
        self.outages = 0
        self.fallback_grants = 0

    def __repr__(self) -> str:
        return f"RedisBudget(namespace={self._namespace!r}, degraded={self.degraded})"

    @property
    def degraded(self) -> bool:
        """True while Redis does not answer and this member decides alone from its share."""
        return self._down_since is not None

    @property
    def live_members(self) -> int:
        return self._members.live if self._members is not None else ASSUMED_MEMBERS

    def key(self, pool: str | None) -> str:
        suffix = "public" if pool is None else f"account:{pool}"
        return f"{self._namespace}:budget:{suffix}"

    async def acquire(
        self, pool: str | None, lane: Lane, window: SlidingWindow, now: float
    ) -> float:
        """Record a send in `pool` now and return 0, or return the seconds until one may fit.

        A member's callers of one pool ask one at a time, and a "wait" answer is kept until it
        runs out: waiters woken together cost Redis one refusal, not one each.
        """
        if window.limit == 0:
            return 0.0
        self._longest_span = max(self._longest_span, window.span)
        lock = self._locks.get(pool)
        if lock is None:
            lock = self._locks[pool] = asyncio.Lock()
        async with lock:
            return await self._acquire(pool, lane, window, now)

    async def _acquire(
        self, pool: str | None, lane: Lane, window: SlidingWindow, now: float
    ) -> float:
        if self._down_since is not None:
            if now < self._next_probe:
                return self._local(pool, lane, window, now)
            self._next_probe = now + self._probe_s  # one probe at a time; the rest stay local
            try:
                # a write, not PING: a read-only replica after a failover (or a Redis out of
                # memory) answers PING and refuses the budget script
                await self._redis.set(self._probe_key, self._member, px=1000)
            except REDIS_ERRORS:
                return self._local(pool, lane, window, now)
            self._answered(now)
        cap = lane_cap(window, lane)
        # a lane that may use more of the window was refused: this one would be, too
        blocked = max(
            (until for (p, c), until in self._blocked.items() if p == pool and c >= cap),
            default=0.0,
        )
        if blocked > now:
            return blocked - now
        recovering = self._recovering(window, now)
        if recovering:
            share_wait = self._share_wait(pool, lane, window, now)
            if share_wait > 0:
                return share_wait
        try:
            waited_ms = await self.ask(pool, lane, window)
        except _ASK_ERRORS as exc:
            self._lost(exc, now)  # (while down: the same outage goes on, its share with it)
            return self._local(pool, lane, window, now)
        if waited_ms > 0:
            self._blocked[(pool, cap)] = now + waited_ms / 1000.0
            return waited_ms / 1000.0
        if recovering:
            self._remember(pool, window, now)  # the share still counts it while recovering
        return 0.0

    async def ask(
        self, pool: str | None, lane: Lane, window: SlidingWindow, *, at_us: int | None = None
    ) -> int:
        """One acquisition in Redis: 0 = recorded, else milliseconds to wait; errors propagate.

        `at_us` replaces the server's TIME (tests drive the script with arbitrary clocks).
        """
        args: list[int | str] = [
            lane_cap(window, lane),
            span_us(window),
            f"{self._member}:{next(self._seq)}",
        ]
        if at_us is not None:
            args.append(at_us)
        waited, epoch = await self._script(keys=[self.key(pool), self._epoch_key], args=args)
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        forgotten = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        if forgotten and self._down_since is None:
            raise BudgetForgotten(f"Redis lost the budget (epoch {epoch[:40]!r})")
        return int(waited)

    def _fallback_for(self, pool: str | None, window: SlidingWindow) -> _Fallback:
        state = self._fallback.setdefault(pool, _Fallback())
        members = self.live_members
        if state.window is None or state.members != members:
            state.window = share_of(window, members)
            state.members = members
            for sent in state.sends:
                state.window.record(sent)
        return state

    def _remember(self, pool: str | None, window: SlidingWindow, now: float) -> None:
        state = self._fallback_for(pool, window)
        horizon = now - max(window.span, state.window.span if state.window else 0.0)
        while state.sends and state.sends[0] <= horizon:
            state.sends.popleft()
        state.sends.append(now)
        if state.window is not None:
            state.window.record(now)

    def _recovering(self, window: SlidingWindow, now: float) -> bool:
        """Within one span (+ probe_s) of Redis answering again: the share applies as well."""
        if self._recovered_at is None:
            return False
        if now < self._recovered_at + window.span + self._probe_s:
            return True
        if now >= self._recovered_at + self._longest_span + self._probe_s:
            self._recovered_at = None
            self._fallback.clear()
        return False

    def _share_wait(self, pool: str | None, lane: Lane, window: SlidingWindow, now: float) -> float:
        state = self._fallback_for(pool, window)
        assert state.window is not None
        return state.window.wait(now, lane)

    def _local(self, pool: str | None, lane: Lane, window: SlidingWindow, now: float) -> float:
        assert self._down_since is not None
        wait = max(self._down_since + window.span - now, self._share_wait(pool, lane, window, now))
        if wait > 0:
            return wait
        self._remember(pool, window, now)
        self.fallback_grants += 1
        return 0.0

    def _lost(self, exc: BaseException, now: float) -> None:
        self._next_probe = now + self._probe_s
        if self._down_since is None:
            self._down_since = now
            self._recovered_at = None
            self._fallback.clear()  # what it sent before is covered by the pause of one span
            self._blocked.clear()
            self.outages += 1
            log.warning(
                "fleet rate budget unreachable (%s); this member pauses one window, then keeps "
                "1/%d of each limit until Redis answers",
                type(exc).__name__,
                self.live_members,
            )

    def _answered(self, now: float) -> None:
        if self._down_since is not None:
            log.info(
                "fleet rate budget answers again after %.1f s; limits are shared again",
                now - self._down_since,
            )
            self._down_since = None
            self._recovered_at = now
            self._epoch = None  # whatever Redis holds now: the recovery covers what it lost
