"""FleetMembers: who is in the gateway fleet, as a Redis sorted set refreshed by heartbeats."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from redis.asyncio import Redis

from gateway.cluster.redis_conn import REDIS_ERRORS, honour_cancel

log = logging.getLogger(__name__)

# Before any count was seen, a member assumes it has one peer: its fallback share is then half.
ASSUMED_MEMBERS = 2

# KEYS[1] the member set. ARGV: member id ("" = only count), ttl ms. Scores are Redis TIME in ms,
# so members' clocks do not matter. Returns the live members after the update.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
return redis.call('ZCARD', KEYS[1])
"""


def new_member_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class FleetMembers:
    """This process's entry in `{namespace}:members`; a member missing `ttl_s` of heartbeats is gone.

    `last_count` is the number of live members seen by the last successful call (None before
    one); `live` is that or ASSUMED_MEMBERS. `run()` is the heartbeat loop the composition root
    gives to its supervisor: it survives Redis outages (logged once each) and never raises.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str = "alp-gateway",
        member_id: str | None = None,
        ttl_s: float = 10.0,
        interval_s: float = 2.0,
    ) -> None:
        if ttl_s <= 0 or interval_s <= 0 or interval_s >= ttl_s:
            raise ValueError("need 0 < interval_s < ttl_s")
        self._redis = redis
        self.key = f"{namespace}:members"
        self.member_id = member_id or new_member_id()
        self._ttl_ms = int(ttl_s * 1000)
        self._interval = interval_s
        self._script = redis.register_script(_HEARTBEAT)
        self.last_count: int | None = None
        self._unreachable = False

    def __repr__(self) -> str:
        return f"FleetMembers({self.member_id!r}, last_count={self.last_count!r})"

    @property
    def live(self) -> int:
        return self.last_count if self.last_count is not None else ASSUMED_MEMBERS

    async def _call(self, member: str) -> int:
        count = int(await self._script(keys=[self.key], args=[member, self._ttl_ms]))
        self.last_count = count
        return count

    async def join(self) -> int:
        """Register (or refresh) this member; returns the live members, this one included."""
        count = await self._call(self.member_id)
        log.info("joined the gateway fleet as %s (%d live members)", self.member_id, count)
        return count

    async def heartbeat(self) -> int:
        return await self._call(self.member_id)

    async def count(self) -> int:
        """Live members now, without refreshing this one."""
        return await self._call("")

    async def leave(self) -> None:
        await self._redis.zrem(self.key, self.member_id)
        log.info("left the gateway fleet as %s", self.member_id)

    async def run(self) -> None:
        """Heartbeat every `interval_s` until cancelled; Redis failures are logged once per outage."""
        while True:
            try:
                await self.heartbeat()
                honour_cancel()
            except REDIS_ERRORS as exc:
                if not self._unreachable:
                    self._unreachable = True
                    log.warning(
                        "fleet heartbeat failed (%s); keeping the last member count %d",
                        type(exc).__name__,
                        self.live,
                    )
            else:
                if self._unreachable:
                    self._unreachable = False
                    log.info("fleet heartbeat works again (%d live members)", self.live)
            await asyncio.sleep(self._interval)
