"""SharedFeed: one upstream subscription per public topic for the whole fleet.

Each topic some member's consumers want is held by one member under a Redis lease (`SET NX PX`,
renewed by the holder while any member still wants the topic). Free topics are claimed by the
fleet's topic leader (itself a lease, held by a member with topics), so the fleet's topics sit on
as few upstream sockets as one process would use (ALP allows 20 topics a socket). The holder
subscribes upstream through its own PublicFeed and publishes every event and state change on the
topic's Redis channel (gateway/core/event_wire.py); every other member follows that channel and
fans out to its own consumers. When the holder dies its leases run out, the next member to tick
leads and claims its topics (within lease + one tick), and every consumer sees RECONNECTING then
RESYNCED: order books resnapshot. Followers also mark a gap in a holder's sequence numbers the
same way, so nothing is silently missing.

While Redis cannot be reached the member subscribes upstream itself for the topics its consumers
want (role LOCAL: market data keeps flowing, at the old cost) and says so (`degraded`); when Redis
answers again each topic returns to one holder for the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from gateway.cluster.redis_conn import REDIS_ERRORS, honour_cancel
from gateway.core import event_wire, ws_events
from gateway.core.event_wire import Refusal
from gateway.core.stream_state import Notice, StreamState, TopicStates, coalesce
from gateway.errors import GatewayError, PrivateLoginRefused, TopicRefused
from gateway.exchange.ws_private import AccountFeed
from gateway.exchange.ws_public import FeedListener, PublicFeed
from gateway.supervisor import Supervisor

log = logging.getLogger(__name__)

# KEYS leader. ARGV me, lease ms. Renews or takes the topic leadership; returns the leader.
_LEAD = """
local leader = redis.call('GET', KEYS[1])
if leader == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return leader end
if not leader then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return ARGV[1] end
return leader
"""

# KEYS holder, live, want, leader, wanted (the fleet's wanted topics). ARGV me, lease ms, wanted
# here (0/1), topic. Interest entries are scored with their expiry in Redis TIME, so members'
# clocks do not matter. The holder renews only while some member wants the topic; a free topic
# wanted here is taken at once if this member leads, else the leader claims it (_CLAIM).
# Returns {holder or "", the member whose subscription is live or "", members wanting it}.
_TICK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[3], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], lease * 2)
  redis.call('ZADD', KEYS[5], now + lease, ARGV[4])
  redis.call('PEXPIRE', KEYS[5], lease * 2)
else
  redis.call('ZREM', KEYS[3], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local wanted = redis.call('ZCARD', KEYS[3])
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  if wanted > 0 then
    redis.call('PEXPIRE', KEYS[1], lease)
    if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('PEXPIRE', KEYS[2], lease) end
  end
elseif not holder and ARGV[3] == '1' and redis.call('GET', KEYS[4]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', lease)
  holder = ARGV[1]
end
return {holder or '', redis.call('GET', KEYS[2]) or '', wanted}
"""

# KEYS wanted (the fleet's wanted topics), leader. ARGV me, lease ms, key prefix, then the
# accounts this member has. The leader takes every wanted topic nobody holds that it can serve
# (a private topic only for one of its accounts); returns those topics.
_CLAIM = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local mine = {}
for i = 4, #ARGV do mine['private:' .. ARGV[i]] = true end
local claimed = {}
for _, topic in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local servable = string.sub(topic, 1, 8) ~= 'private:' or mine[topic]
  if servable and redis.call('SET', ARGV[3] .. topic .. ':holder', ARGV[1], 'NX', 'PX', ARGV[2]) then
    table.insert(claimed, topic)
  end
end
return claimed
"""

# KEYS holder, live. ARGV me, lease ms, live (0/1). Only the holder says whose subscription is live.
_LIVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
elseif redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS holder, live, want. ARGV me. Lets go of what this member holds and wants.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS a topic's holder lease. ARGV me, lease ms. Takes it if free; 1 if taken.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

# KEYS a lease. ARGV me. Deletes it if it is this member's.
_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Records waiting for Redis; beyond it they are dropped (followers see a gap and resync).
OUTBOX_LIMIT = 50_000
# Records a pipeline: a burst never holds the event loop (and the lease renewals) for long.
MAX_FLUSH = 4_000
MAX_JOINED = 500  # records a message


PRIVATE_PREFIX = "private:"  # "private:ACCOUNT": an account's private socket, shared like a topic


class UpstreamTopics:
    """What a SharedFeed subscribes through: public topics on this process's PublicFeed, and
    "private:ACCOUNT" on the account's PrivateFeed (its one socket, logged in with the fleet's
    token for the account). Every member must have the same accounts configured."""

    def __init__(
        self,
        public: PublicFeed,
        private: Callable[[str], AccountFeed],
        accounts: tuple[str, ...] = (),
    ) -> None:
        self.public = public
        self._private = private
        self._accounts = accounts

    def accounts(self) -> tuple[str, ...]:
        """The ALP accounts whose private socket this member can hold."""
        return self._accounts

    async def add(self, topic: str, listener: FeedListener) -> None:
        if topic.startswith(PRIVATE_PREFIX):
            await self._private(topic.removeprefix(PRIVATE_PREFIX)).add(listener)
        else:
            await self.public.add(topic, listener)

    async def remove(self, topic: str, listener: FeedListener) -> None:
        if topic.startswith(PRIVATE_PREFIX):
            await self._private(topic.removeprefix(PRIVATE_PREFIX)).remove(listener)
        else:
            await self.public.remove(topic, listener)

    def is_live(self, topic: str) -> bool:
        if topic.startswith(PRIVATE_PREFIX):
            return self._private(topic.removeprefix(PRIVATE_PREFIX)).is_live()
        return self.public.is_live(topic)

    async def close(self) -> None:
        await self.public.close()  # private feeds are closed by their owner


class SharedAccount:
    """An account's private events through the fleet: the AccountFeed the stream hub uses."""

    def __init__(self, share: SharedFeed, account: str) -> None:
        self._share = share
        self._topic = PRIVATE_PREFIX + account

    async def add(self, listener: FeedListener) -> None:
        await self._share.add(self._topic, listener)

    async def remove(self, listener: FeedListener) -> None:
        await self._share.remove(self._topic, listener)

    def is_live(self) -> bool:
        return self._share.is_live(self._topic)


class Role(enum.StrEnum):
    NONE = "none"  # not decided yet
    HOLDER = "holder"  # subscribed upstream here, publishing for the fleet
    FOLLOWER = "follower"  # reading the holder's channel
    LOCAL = "local"  # Redis unreachable: subscribed upstream here for our own consumers only


@dataclass(frozen=True, slots=True)
class Answer:
    holder: str
    live: str
    wanted: int


@dataclass
class ShareStats:
    published: int = 0
    publish_failures: int = 0
    outbox_dropped: int = 0
    received: int = 0
    gaps: int = 0  # holder sequence gaps seen by this follower (each one a RECONNECTING/RESYNCED)
    stale: int = 0  # messages of a member that no longer holds the topic
    undecodable: int = 0
    handovers: int = 0  # topics this member took over from another holder


@dataclass
class _Topic:
    name: str
    channel: str
    listeners: set[FeedListener] = field(default_factory=set)
    role: Role = Role.NONE
    relay: _Relay | None = None
    holder: str = ""  # follower: whose messages are accepted
    seq_in: int | None = None  # follower: the last sequence number read from `holder`
    seq_out: int = 0  # holder: the last sequence number published
    idle_since: float | None = None  # holder: since when no member wants the topic
    orphan_since: float | None = None  # wanted here: since when no member holds it
    refused: bool = False  # holder: ALP refused the topic


class _Relay:
    """The SharedFeed's one listener on the local PublicFeed for a topic it subscribes upstream."""

    def __init__(self, share: SharedFeed, topic: _Topic) -> None:
        self._share = share
        self._topic = topic

    def on_event(self, topic: str, event: ws_events.WsEvent) -> None:
        self._share._from_upstream(self._topic, event)

    def on_status(self, state: str, topics: tuple[str, ...]) -> None:
        self._share._status_from_upstream(self._topic, StreamState(state))

    def on_rejected(self, topic: str, error: GatewayError) -> None:
        self._share._refused_upstream(self._topic, error)


class SharedFeed:
    """A TopicFeed for a fleet member: add/remove/is_live as PublicFeed, topics shared fleet-wide."""

    def __init__(
        self,
        inner: UpstreamTopics,
        redis: Redis,
        member_id: str,
        *,
        supervisor: Supervisor,
        lease_s: float = 3.0,
        linger_s: float = 2.0,
        namespace: str = "alp-gateway",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.inner = inner
        self._redis = redis
        self.member_id = member_id.replace("|", "_").replace("\n", "_")  # safe in a record
        self._supervisor = supervisor
        self._lease_ms = max(1, int(lease_s * 1000))
        self.tick_s = lease_s / 4
        self._linger_s = linger_s
        self._prefix = f"{namespace}:topic:"
        self._leader_key = f"{namespace}:topic-leader"
        self._wanted_key = f"{namespace}:topics-wanted"
        self._nudge_channel = f"{namespace}:topic-nudge"  # "a topic wants a holder"
        self._clock = clock
        self._topics: dict[str, _Topic] = {}
        self._states = TopicStates()
        self._lock = asyncio.Lock()
        self._lead = redis.register_script(_LEAD)
        self._tick = redis.register_script(_TICK)
        self._claim = redis.register_script(_CLAIM)
        self._live = redis.register_script(_LIVE)
        self._release = redis.register_script(_RELEASE)
        self._resign = redis.register_script(_RESIGN)
        self._take = redis.register_script(_TAKE)
        self._pubsub: PubSub | None = None
        self._followed: set[str] = set()  # channels subscribed on `_pubsub`
        self._outbox: list[tuple[str, str, bytes]] = []  # (kind, topic or channel, data)
        self._outbox_ready = asyncio.Event()
        self._tick_now = asyncio.Event()
        self._batch: list[Notice] | None = None  # notices held back by _batched()
        self._started = False
        self._closed = False
        self.leader = ""  # the topic leader the last tick saw
        self.degraded = False
        self.stats = ShareStats()

    def __repr__(self) -> str:
        return f"SharedFeed({self.member_id!r}, topics={len(self._topics)})"

    # -- the TopicFeed interface ----------------------------------------------------------------
    async def add(self, topic: str, listener: FeedListener) -> None:
        self._start()
        async with self._lock:
            entry = self._topics.get(topic)
            if entry is not None:  # wanted here already, or held for other members
                fresh = listener not in entry.listeners
                entry.listeners.add(listener)
                if fresh and self._states.is_live(topic):
                    listener.on_status(StreamState.SUBSCRIBED, (topic,))
                elif fresh and self._states.is_resyncing(topic):
                    listener.on_status(StreamState.RECONNECTING, (topic,))
                return
            entry = self._topics[topic] = _Topic(topic, self._prefix + topic, {listener})
            try:
                await self._follow(self._nudge_channel)
                await self._follow(entry.channel)  # before asking, so no status slips past
                await self._exchange([entry])
            except REDIS_ERRORS as exc:
                self._redis_trouble(exc)
                await self._go_local(entry)

    async def remove(self, topic: str, listener: FeedListener) -> None:
        async with self._lock:
            if self._closed:
                return  # close() let go of everything
            entry = self._topics.get(topic)
            if entry is None or listener not in entry.listeners:
                return
            entry.listeners.discard(listener)
            if entry.listeners or entry.role is Role.HOLDER:
                return  # a holder keeps the topic while other members want it (see _adopt)
            await self._forget(entry)
            if not self.degraded:  # (while Redis is away the interest expires by itself)
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._exchange([entry])  # withdraw this member's interest now

    def is_live(self, topic: str) -> bool:
        return self._states.is_live(topic)

    # -- status ---------------------------------------------------------------------------------
    def roles(self) -> dict[str, Role]:
        return {name: entry.role for name, entry in self._topics.items()}

    def held(self) -> tuple[str, ...]:
        return tuple(sorted(n for n, e in self._topics.items() if e.role is Role.HOLDER))

    def followed(self) -> tuple[str, ...]:
        return tuple(sorted(n for n, e in self._topics.items() if e.role is Role.FOLLOWER))

    # -- lifecycle ------------------------------------------------------------------------------
    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._supervisor.start("fleet:topics", self._tick_loop)
            self._supervisor.start("fleet:relay-out", self._publish_loop)
            self._supervisor.start("fleet:relay-in", self._read_loop)

    async def close(self) -> None:
        """Leave: followers are told at once and the leases freed, so another member takes over
        without waiting for them to expire."""
        async with self._lock:
            self._closed = True
        for name in ("fleet:topics", "fleet:relay-in", "fleet:relay-out"):
            await self._supervisor.stop(name)
        held = [e for e in self._topics.values() if e.role is Role.HOLDER]
        with contextlib.suppress(*REDIS_ERRORS):
            pipe = self._redis.pipeline(transaction=False)
            for entry in held:
                entry.seq_out += 1
                pipe.publish(
                    entry.channel,
                    event_wire.encode_status(
                        self.member_id, entry.seq_out, StreamState.RECONNECTING
                    ),
                )
                await self._release(keys=self._keys(entry), args=[self.member_id], client=pipe)
            if self.leader == self.member_id:
                await self._resign(keys=[self._leader_key], args=[self.member_id], client=pipe)
            if held:
                pipe.publish(self._nudge_channel, b"holder leaving")
            await pipe.execute()
        if self._pubsub is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        self._topics.clear()
        await self.inner.close()

    # -- Redis: leases ------------------------------------------------------------------------
    def _keys(self, entry: _Topic) -> list[str]:
        base = entry.channel
        return [f"{base}:holder", f"{base}:live", f"{base}:want"]

    async def _ask(self, entries: list[_Topic]) -> tuple[str, list[Answer], list[str]]:
        """One round trip: the leadership, each entry's lease tick and, when leading, the claim
        of every wanted topic nobody holds. Returns (leader, answers, claimed topics)."""
        pipe = self._redis.pipeline(transaction=False)
        await self._lead(
            keys=[self._leader_key], args=[self.member_id, self._lease_ms], client=pipe
        )
        for entry in entries:
            await self._tick(
                keys=[*self._keys(entry), self._leader_key, self._wanted_key],
                args=[self.member_id, self._lease_ms, "1" if entry.listeners else "0", entry.name],
                client=pipe,
            )
        await self._claim(
            keys=[self._wanted_key, self._leader_key],
            args=[self.member_id, self._lease_ms, self._prefix, *self.inner.accounts()],
            client=pipe,
        )
        leader, *replies, claimed = await pipe.execute()
        answers = [Answer(_text(r[0]), _text(r[1]), int(r[2])) for r in replies]
        return _text(leader), answers, [_text(topic) for topic in claimed]

    async def _exchange(self, entries: list[_Topic]) -> None:
        """Ask Redis about `entries` and act on every answer (under the lock)."""
        leader, answers, claimed = await self._ask(entries)
        with self._batched():
            await self._act(entries, leader, answers, claimed)

    async def _act(
        self, entries: list[_Topic], leader: str, answers: list[Answer], claimed: list[str]
    ) -> None:
        await self._follow(self._nudge_channel)  # (again, if Redis was down when first asked)
        self._redis_fine()
        if leader != self.leader:
            if leader == self.member_id:
                log.info("fleet: this member now leads the topics")
            self.leader = leader
        orphans = False
        for entry, answer in zip(entries, answers, strict=True):
            if self._topics.get(entry.name) is entry:
                orphans |= await self._adopt(entry, answer)
        for topic in claimed:
            held = self._topics.setdefault(topic, _Topic(topic, self._prefix + topic))
            if held.role is not Role.HOLDER:
                await self._become_holder(held)
        if orphans and leader != self.member_id:
            self._redis_nudge()

    async def _tick_loop(self) -> None:
        """Renew, take over and release leases every lease/4 (at once when nudged); Redis trouble
        sends the topics our consumers want to our own upstream subscriptions until it answers."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):  # not wait_for: it can swallow
                    await self._tick_now.wait()  # the cancel that stops this loop (3.11)
            self._tick_now.clear()
            async with self._lock:
                entries = list(self._topics.values())
                if not entries:
                    continue
                try:
                    await self._exchange(entries)
                    honour_cancel()
                except REDIS_ERRORS as exc:
                    self._redis_trouble(exc)
                    with self._batched():
                        for entry in entries:
                            if entry.role is not Role.HOLDER and entry.listeners:
                                await self._go_local(entry)

    async def _adopt(self, entry: _Topic, answer: Answer) -> bool:
        """Act on Redis's answer for one topic (under the lock); True if it awaits a holder."""
        if answer.holder:
            entry.orphan_since = None
        if answer.holder == self.member_id:
            if entry.role is not Role.HOLDER:
                await self._become_holder(entry)
            if entry.refused:  # ALP refused it: nothing to hold
                await self._let_go(entry)
                return False
            self._repair_live(entry, answer)
            if entry.listeners or answer.wanted > 0:
                entry.idle_since = None
            elif entry.idle_since is None:
                entry.idle_since = self._clock()
            elif self._clock() - entry.idle_since >= self._linger_s:
                await self._let_go(entry)
        elif answer.holder and entry.listeners:
            await self._become_follower(entry, answer)
        elif entry.listeners:  # nobody holds it (its holder died): the leader will claim it
            if entry.role is not Role.NONE:
                await self._unsubscribe_upstream(entry)
                self._mark_lost(entry.name)
                entry.role, entry.holder = Role.NONE, ""
            await self._follow(entry.channel)
            return not await self._take_orphan(entry)  # still waiting for a holder?
        else:  # another member's topic we no longer want, or a lease we lost with nobody here
            await self._forget(entry)
        return False

    def _repair_live(self, entry: _Topic, answer: Answer) -> None:
        """Write the `live` flag again when Redis disagrees with the holder's subscription: it
        was lost with Redis (a restart without persistence) or with a failed publish, and a
        member that starts following would otherwise never hear SUBSCRIBED."""
        if entry.relay is None:
            return
        live = self.inner.is_live(entry.name)
        if live != (answer.live == self.member_id):
            self._queue("live", entry.name, b"1" if live else b"0")

    async def _take_orphan(self, entry: _Topic) -> bool:
        """After a whole lease without a holder (a leader that cannot serve the topic, or one
        whose loop is stuck), this member takes the topic itself."""
        now = self._clock()
        if entry.orphan_since is None:
            entry.orphan_since = now
            return False
        if now - entry.orphan_since < self._lease_ms / 1000:
            return False
        if not await self._take(keys=self._keys(entry)[:1], args=[self.member_id, self._lease_ms]):
            return False
        log.warning("fleet: topic %s had no holder for a lease: taking it", entry.name)
        await self._become_holder(entry)
        return True

    def _redis_nudge(self) -> None:
        self._queue("pub", self._nudge_channel, b"wanted")

    async def _become_holder(self, entry: _Topic) -> None:
        was = entry.role
        entry.role = Role.HOLDER
        entry.idle_since = None
        if was is Role.FOLLOWER:
            self.stats.handovers += 1
            log.info("fleet: took over topic %s from %s", entry.name, entry.holder or "?")
        if was is not Role.LOCAL:  # LOCAL keeps its subscription: nothing was missed
            self._mark_lost(entry.name)  # from here consumers see RESYNCED on the upstream ack
        with contextlib.suppress(*REDIS_ERRORS):
            await self._unfollow(entry.channel)
        entry.holder = self.member_id
        if entry.relay is None:
            await self._subscribe_upstream(entry)
        elif self.inner.is_live(entry.name):  # was LOCAL: live already, tell the fleet
            self._publish_status(entry, StreamState.SUBSCRIBED)

    async def _become_follower(self, entry: _Topic, answer: Answer) -> None:
        if entry.role is not Role.FOLLOWER:
            await self._follow(entry.channel)
            await self._unsubscribe_upstream(entry)
            entry.role = Role.FOLLOWER
        if entry.holder != answer.holder:
            entry.holder, entry.seq_in = answer.holder, None
            self._mark_lost(entry.name)
        if answer.live == answer.holder:
            self._mark_live(entry.name)

    async def _go_local(self, entry: _Topic) -> None:
        """Redis is unreachable: serve this member's consumers from its own subscription."""
        if entry.role is Role.LOCAL:
            return
        self._mark_lost(entry.name)
        entry.role, entry.holder = Role.LOCAL, ""
        with contextlib.suppress(*REDIS_ERRORS):
            await self._unfollow(entry.channel)
        if entry.relay is None:
            await self._subscribe_upstream(entry)

    async def _let_go(self, entry: _Topic) -> None:
        """Unsubscribe and free the lease: no member has wanted the topic for `linger_s`, or ALP
        refused it."""
        why = "ALP refused it" if entry.refused else "no member wants it"
        log.info("fleet: releasing topic %s (%s)", entry.name, why)
        with contextlib.suppress(*REDIS_ERRORS):
            await self._release(keys=self._keys(entry), args=[self.member_id])
        await self._forget(entry)

    async def _forget(self, entry: _Topic) -> None:
        await self._unsubscribe_upstream(entry)
        with contextlib.suppress(*REDIS_ERRORS):
            await self._unfollow(entry.channel)
        self._states.unsubscribed((entry.name,))
        self._topics.pop(entry.name, None)

    # -- upstream side (HOLDER and LOCAL) -------------------------------------------------------
    async def _subscribe_upstream(self, entry: _Topic) -> None:
        entry.relay = _Relay(self, entry)
        await self.inner.add(entry.name, entry.relay)  # says SUBSCRIBED at once if live already

    async def _unsubscribe_upstream(self, entry: _Topic) -> None:
        relay, entry.relay = entry.relay, None
        if relay is not None:
            await self.inner.remove(entry.name, relay)

    def _from_upstream(self, entry: _Topic, event: ws_events.WsEvent) -> None:
        if entry.role is Role.HOLDER:
            entry.seq_out += 1
            data = event_wire.encode_event(self.member_id, entry.seq_out, event)
            if data is None:
                entry.seq_out -= 1
            else:
                self._queue("pub", entry.channel, data)
        for listener in tuple(entry.listeners):
            listener.on_event(entry.name, event)

    def _status_from_upstream(self, entry: _Topic, state: StreamState) -> None:
        if entry.role is Role.HOLDER:
            self._publish_status(entry, state)
        if state is StreamState.RECONNECTING:
            self._mark_down(entry.name)
        else:
            self._mark_live(entry.name)

    def _refused_upstream(self, entry: _Topic, error: GatewayError) -> None:
        refusal = _refusal_of(error)
        if entry.role is Role.HOLDER and refusal is not None:
            entry.seq_out += 1
            data = event_wire.encode_refusal(self.member_id, entry.seq_out, *refusal)
            self._queue("pub", entry.channel, data)
            # let go at the next tick: a member whose consumer asks later finds no holder, the
            # leader claims it again and that consumer hears ALP's refusal afresh
            entry.refused = True
            self._tick_now.set()
        self._refuse(entry, error)

    def _publish_status(self, entry: _Topic, state: StreamState) -> None:
        entry.seq_out += 1
        self._queue(
            "pub", entry.channel, event_wire.encode_status(self.member_id, entry.seq_out, state)
        )
        self._queue("live", entry.name, b"0" if state is StreamState.RECONNECTING else b"1")

    def _queue(self, kind: str, target: str, data: bytes) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self.stats.outbox_dropped += 1
            return
        self._outbox.append((kind, target, data))
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        """Sends what the holder queued, in order: consecutive records of one channel go out as
        one message (event_wire.join), at most MAX_FLUSH records a pipeline so that a burst
        never holds the event loop (and the lease renewals) for long."""
        while True:
            await self._outbox_ready.wait()
            batch, self._outbox = self._outbox[:MAX_FLUSH], self._outbox[MAX_FLUSH:]
            if not self._outbox:
                self._outbox_ready.clear()
            pipe = self._redis.pipeline(transaction=False)
            run: list[bytes] = []
            channel = ""
            for kind, target, data in batch:
                if kind == "pub" and target == channel and len(run) < MAX_JOINED:
                    run.append(data)
                    continue
                if run:
                    pipe.publish(channel, event_wire.join(run))
                run, channel = [], ""
                if kind == "pub":
                    run, channel = [data], target
                    continue
                entry = self._topics.get(target)
                if entry is not None:
                    await self._live(
                        keys=self._keys(entry)[:2],
                        args=[self.member_id, self._lease_ms, data.decode()],
                        client=pipe,
                    )
            if run:
                pipe.publish(channel, event_wire.join(run))
            try:
                await pipe.execute()
            except REDIS_ERRORS as exc:
                self.stats.publish_failures += len(batch)
                self._redis_trouble(exc)
            else:
                self.stats.published += len(batch)
            honour_cancel()

    # -- follower side --------------------------------------------------------------------------
    async def _follow(self, channel: str) -> None:
        if channel in self._followed:
            return
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(channel)
        self._followed.add(channel)

    async def _unfollow(self, channel: str) -> None:
        if channel not in self._followed:
            return
        self._followed.discard(channel)
        if self._pubsub is not None and not self.degraded:  # a renewed pubsub drops it anyway
            await self._pubsub.unsubscribe(channel)

    async def _read_loop(self) -> None:
        """Reads the followed channels; a broken connection is replaced and resubscribed."""
        while True:
            pubsub = self._pubsub
            if pubsub is None or not self._followed:
                await asyncio.sleep(self.tick_s)
                continue
            if pubsub.connection is None:  # its subscribe never got through (Redis was down)
                await self._renew_pubsub(pubsub)
                continue
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                honour_cancel()
            except REDIS_ERRORS as exc:  # an outage is the fleet's degraded state, not a failure
                self._redis_trouble(exc)
                await self._renew_pubsub(pubsub)
                continue
            if message is not None and message.get("type") == "message":
                channel = _text(message["channel"])
                for record in event_wire.split(message["data"]):
                    self._on_message(channel, record)

    async def _renew_pubsub(self, broken: PubSub) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await broken.aclose()  # type: ignore[no-untyped-call]
        await asyncio.sleep(self.tick_s)
        async with self._lock:
            if self._pubsub is not broken:
                return
            self._pubsub = self._redis.pubsub()
            channels = sorted(self._followed)
            if channels:
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._pubsub.subscribe(*channels)

    def _on_message(self, channel: str, data: bytes) -> None:
        if channel == self._nudge_channel:
            if self.leader == self.member_id:
                self._tick_now.set()  # a member waits for a holder: claim now, not next tick
            return
        entry = self._topics.get(channel.removeprefix(self._prefix))
        if entry is None or entry.role not in (Role.FOLLOWER, Role.NONE):
            return
        self.stats.received += 1
        try:
            message = event_wire.decode(data)
        except event_wire.WireError:
            self.stats.undecodable += 1
            return
        if message.holder != entry.holder:
            if isinstance(message, event_wire.RelayedStatus) and message.state is not (
                StreamState.RECONNECTING
            ):  # a new holder announces itself before the next tick would tell us
                self._adopt_announced(entry, message)
            else:
                self.stats.stale += 1
            return
        if entry.seq_in is not None and message.seq != entry.seq_in + 1:
            self.stats.gaps += 1
            self._mark_lost(entry.name)
            self._mark_live(entry.name)
        entry.seq_in = message.seq
        if isinstance(message, event_wire.Relayed):
            for listener in tuple(entry.listeners):
                listener.on_event(entry.name, message.event)
        elif isinstance(message, event_wire.RelayedStatus):
            if message.state is StreamState.RECONNECTING:
                self._mark_down(entry.name)
            else:
                self._mark_live(entry.name)
        else:
            self._refuse(entry, _error_of(entry.name, message))

    def _adopt_announced(self, entry: _Topic, message: event_wire.RelayedStatus) -> None:
        """Follow the member that announced itself as `entry`'s holder. Its predecessor is most
        likely gone for all its topics: they are all marked lost now, together, and each comes
        back as its new holder announces it (or the next tick finds it)."""
        old = entry.holder
        with self._batched():
            for other in self._topics.values():
                if other.role is Role.FOLLOWER and old and other.holder == old:
                    self._mark_lost(other.name)
            self._mark_lost(entry.name)
            entry.role, entry.holder, entry.seq_in = Role.FOLLOWER, message.holder, message.seq
            self._mark_live(entry.name)

    # -- consumers' view ------------------------------------------------------------------------
    def _mark_lost(self, topic: str) -> None:
        if self._states.is_live(topic):
            self._notify(self._states.lost((topic,)))

    def _mark_down(self, topic: str) -> None:
        """Upstream trouble (not a hand-over): consumers still waiting for their first ack hear
        RECONNECTING too, instead of silence while ALP is unreachable."""
        if self._states.is_live(topic):
            self._notify(self._states.lost((topic,)))
        else:
            self._notify(self._states.unreachable((topic,)))

    def _mark_live(self, topic: str) -> None:
        if not self._states.is_live(topic):
            self._notify(self._states.acknowledged((topic,)))

    def _notify(self, notices: list[Notice]) -> None:
        if self._batch is not None:
            self._batch.extend(notices)
            return
        for state, topics in notices:
            by_listener: dict[FeedListener, list[str]] = {}
            for topic in topics:
                entry = self._topics.get(topic)
                for listener in entry.listeners if entry else ():
                    by_listener.setdefault(listener, []).append(topic)
            for listener, mine in by_listener.items():
                listener.on_status(state, tuple(mine))

    @contextlib.contextmanager
    def _batched(self) -> Iterator[None]:
        """Notices raised inside go out together at the end, coalesced (see stream_state)."""
        if self._batch is not None:
            yield
            return
        self._batch = []
        try:
            yield
        finally:
            batch, self._batch = self._batch, None
            self._notify(coalesce(batch))

    def _refuse(self, entry: _Topic, error: GatewayError) -> None:
        self._states.refused(entry.name)
        for listener in tuple(entry.listeners):
            listener.on_rejected(entry.name, error)

    def _redis_trouble(self, exc: BaseException) -> None:
        if not self.degraded:
            self.degraded = True
            log.warning(
                "fleet: Redis unreachable (%s): topics this member's consumers want are "
                "subscribed upstream here until it answers",
                type(exc).__name__,
            )

    def _redis_fine(self) -> None:
        if self.degraded:
            self.degraded = False
            log.info("fleet: Redis answers again: topics return to one holder each")


def _refusal_of(error: GatewayError) -> tuple[str, event_wire.Refusal] | None:
    """What followers are told of an upstream refusal: ALP's words and the kind of refusal."""
    if isinstance(error, TopicRefused):
        kind = Refusal.TOPIC_NOT_FOUND if error.not_found else Refusal.INVALID_TOPIC
        return error.alp_message, kind
    if isinstance(error, PrivateLoginRefused):
        return error.alp_message, Refusal.LOGIN_REFUSED
    return None


def _error_of(topic: str, message: event_wire.RelayedRefusal) -> GatewayError:
    """The error a follower's consumers end with: the one the holder's consumers got."""
    if message.reason is Refusal.LOGIN_REFUSED:
        return PrivateLoginRefused(topic.removeprefix(PRIVATE_PREFIX), message.message)
    not_found = message.reason is Refusal.TOPIC_NOT_FOUND
    return TopicRefused(topic, message.message, not_found=not_found)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
