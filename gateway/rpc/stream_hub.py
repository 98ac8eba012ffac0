"""StreamHub: one listener per upstream topic that encodes each event once and fans it out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

from gateway.core import ws_events
from gateway.errors import GatewayError
from gateway.exchange.ws_private import AccountFeed
from gateway.exchange.ws_public import TopicFeed
from gateway.rpc import stream_encode as enc
from gateway.rpc.delivery import MAX_MESSAGE_BYTES, MESSAGE_CAP_BYTES, Delivery

log = logging.getLogger(__name__)

Encoder = Callable[[Any], bytes]
LARGE_AUDIENCE = 2000
LARGE_AUDIENCE_FLUSH_S = 0.002
# What a message adds around one encoded event: two length-delimited wrappers (the Subscribe form)
# of at most 6 bytes each, and the `skipped` tail of at most 11.
EVENT_OVERHEAD_BYTES: Final = 32


@dataclass(slots=True)
class DropStats:
    """Upstream events that reached no consumer, for GetStatus and metrics.

    Policy (for every channel, lossless ones included): an event that cannot be delivered at all
    is dropped for everyone, counted here and logged once per topic; the stream and the upstream
    socket carry on. `unencodable`: the event does not fit its protobuf (a trade id >= 2^63, a
    timestamp of 1e30); letting the error escape would reset the socket and send every topic on
    it RECONNECTING over one bad frame. `oversize`: the event alone would make a message over the
    cap, which a client with gRPC's default 4 MiB limit cannot receive at all; ending the streams
    instead would only repeat on reconnect with the next such event, so it is dropped like an
    unencodable one.
    """

    unencodable: int = 0
    oversize: int = 0


@dataclass(frozen=True, slots=True)
class Target:
    """How one consumer wants a channel: wire form, optional filter, conflation key."""

    subscribe_kind: int  # 0 = per-channel response form, else the SubscribeEvent oneof member
    accept: frozenset[str] | None  # pairs (or currencies) wanted; None = all
    conflate: bool  # newest per pair wins; in a Subscribe stream per (kind, pair)


def _key_of(item: Any) -> str:
    return str(getattr(item, "pair", None) or getattr(item, "currency", ""))


class TopicChannel:
    """The single FeedListener of one topic (or one private account) for one kind of event."""

    def __init__(
        self,
        kind: int,
        encoder: Encoder,
        split: Callable[[Any], list[Any]],
        *,
        stats: DropStats | None = None,
        max_message_bytes: int = MESSAGE_CAP_BYTES,
    ) -> None:
        self.kind = kind
        self._encoder = encoder
        self._split = split
        self.stats = stats if stats is not None else DropStats()
        self._max_event_bytes = max_message_bytes - EVENT_OVERHEAD_BYTES
        self._batch_bytes = min(MAX_MESSAGE_BYTES, self._max_event_bytes)
        self._logged: set[str] = set()  # drop reasons already logged for this topic
        self.targets: dict[Delivery, Target] = {}
        # Unfiltered lossless consumers are served per burst: the events of one upstream burst are
        # encoded once, joined once per wire form, and offered once to each such consumer.
        self._plain: dict[Delivery, Target] = {}
        self._plain_kinds: frozenset[int] = frozenset()
        self._others: dict[Delivery, Target] = {}
        self._burst: dict[int, list[bytes]] = {}
        self._burst_events = 0
        self._flush_scheduled = False
        self.last_state = ""  # the feed's latest status for this topic ("" before the first)
        # registration with the feed: one task per channel, owned by the hub, so that a joiner's
        # cancel (deadline, client gone) never leaves it half done for the consumers beside it
        self.registration: asyncio.Task[None] | None = None
        self.registered = False
        self.events_in = 0
        self.encodes = 0
        self.bursts = 0

    def add(self, delivery: Delivery, target: Target) -> None:
        self.targets[delivery] = target
        if target.accept is None and not target.conflate:
            self._plain[delivery] = target
        else:
            self._others[delivery] = target
        self._plain_kinds = frozenset(t.subscribe_kind for t in self._plain.values())

    def remove(self, delivery: Delivery) -> None:
        self.targets.pop(delivery, None)
        self._plain.pop(delivery, None)
        self._others.pop(delivery, None)
        self._plain_kinds = frozenset(t.subscribe_kind for t in self._plain.values())

    def flush(self) -> None:
        """Offer the pending burst to every unfiltered consumer: one offer per consumer."""
        self._flush_scheduled = False
        if not self._burst_events:
            return
        joined = {kind: self._join_capped(chunks) for kind, chunks in self._burst.items()}
        self._burst, self._burst_events = {}, 0
        self.bursts += 1
        for delivery, target in self._plain.items():
            for chunk, events in joined.get(target.subscribe_kind, ()):
                delivery.offer(chunk, None, events)

    def _join_capped(self, chunks: list[bytes]) -> list[tuple[bytes, int]]:
        """A burst's chunks joined into pieces of at most the batch size: a delivery cannot split
        a piece later, so a burst of many MB must not become one message."""
        total = sum(len(c) for c in chunks)
        if total <= self._batch_bytes:
            return [(b"".join(chunks), len(chunks))]
        pieces: list[tuple[bytes, int]] = []
        run: list[bytes] = []
        size = 0
        for chunk in chunks:
            if run and size + len(chunk) > self._batch_bytes:
                pieces.append((b"".join(run), len(run)))
                run, size = [], 0
            run.append(chunk)
            size += len(chunk)
        if run:
            pieces.append((b"".join(run), len(run)))
        return pieces

    def _queue_burst(self, payload: bytes) -> None:
        for kind in self._plain_kinds:
            wrapped = enc.subscribe_chunk(kind, payload) if kind else enc.channel_chunk(payload)
            self._burst.setdefault(kind, []).append(wrapped)
        self._burst_events += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            if len(self._plain) >= LARGE_AUDIENCE:
                # Thousands of consumers: gather for a moment so each wakes once per interval,
                # not once per upstream frame (wake-ups, not bytes, are what a loop runs out of).
                loop.call_later(LARGE_AUDIENCE_FLUSH_S, self.flush)
            else:
                loop.call_soon(self.flush)

    def on_event(self, topic: str, event: ws_events.WsEvent) -> None:
        self.events_in += 1
        for item in self._split(event):
            filter_value = _filter_value(item)
            payload: bytes | None = None
            channel_chunk: bytes | None = None
            subscribe_chunk: bytes | None = None
            if self._plain:
                payload = self._encode(topic, item)
                if payload is None:
                    continue
                self._queue_burst(payload)
            for delivery, target in self._others.items():
                if target.accept is not None and filter_value not in target.accept:
                    continue
                if payload is None:
                    payload = self._encode(topic, item)
                    if payload is None:
                        break
                key: Hashable = None
                if target.conflate:
                    key = _key_of(item)
                    if target.subscribe_kind:  # one Subscribe queue holds several kinds
                        key = (target.subscribe_kind, key)
                if target.subscribe_kind:
                    if subscribe_chunk is None:
                        subscribe_chunk = enc.subscribe_chunk(target.subscribe_kind, payload)
                    delivery.offer(subscribe_chunk, key)
                else:
                    if channel_chunk is None:
                        channel_chunk = enc.channel_chunk(payload)
                    delivery.offer(channel_chunk, key)

    def _encode(self, topic: str, item: Any) -> bytes | None:
        """The event's protobuf bytes, or None when it cannot be delivered (see DropStats)."""
        self.encodes += 1
        try:
            payload = self._encoder(item)
        except Exception as exc:  # ValueError/TypeError/OverflowError from protobuf, any bug
            self.stats.unencodable += 1
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
            why = f"cannot be encoded ({error}); dropped, the socket is kept"
            self._log_drop("unencodable", topic, item, why)
            return None
        if len(payload) > self._max_event_bytes:
            self.stats.oversize += 1
            cap = self._max_event_bytes + EVENT_OVERHEAD_BYTES
            why = f"of {len(payload)} bytes exceeds the message cap of {cap}; dropped"
            self._log_drop("oversize", topic, item, why)
            return None
        return payload

    def _log_drop(self, reason: str, topic: str, item: Any, why: str) -> None:
        """The first drop of each reason on this topic is logged; every one is counted."""
        if reason in self._logged:
            return
        self._logged.add(reason)
        log.warning(
            "stream %s: %s event %s (logged once per topic; every drop is counted)",
            topic,
            type(item).__name__,
            why,
        )

    def on_status(self, state: str, topics: tuple[str, ...]) -> None:
        self.flush()  # events before the status stay before it
        self.last_state = state
        for delivery in self.targets:
            self.status_to(delivery, state, topics)

    def status_to(self, delivery: Delivery, state: str, topics: tuple[str, ...]) -> None:
        payload = enc.status_payload(state, topics)
        if self.targets[delivery].subscribe_kind:
            delivery.offer_status(enc.subscribe_status_message(payload))
        else:
            delivery.offer_status(enc.channel_status_message(payload))

    def on_rejected(self, topic: str, error: GatewayError) -> None:
        """ALP refused the topic itself (not a notice that mentions it): its consumers end."""
        self.flush()
        for delivery in tuple(self.targets):
            delivery.end(error)


def _filter_value(item: Any) -> str:
    value = getattr(item, "pair", None)
    if value is None:
        value = getattr(item, "currency", "")
    return str(value)


def _single(event: Any) -> list[Any]:
    return [event]


def _ticker_rows(event: Any) -> list[Any]:
    if isinstance(event, ws_events.Tickers):
        return [_TickerItem(row, event.ts) for row in event.rows]
    return []


@dataclass(frozen=True, slots=True)
class _TickerItem:
    row: ws_events.TickerRow
    ts: Any

    @property
    def pair(self) -> str:
        return self.row.pair


def _encode_ticker(item: _TickerItem) -> bytes:
    return enc.ticker_row(item.row, item.ts)


def _private_of(kind: type) -> Callable[[Any], list[Any]]:
    def split(event: Any) -> list[Any]:
        return [event] if isinstance(event, kind) else []

    return split


CHANNELS: dict[str, tuple[int, Encoder, Callable[[Any], list[Any]]]] = {
    "ticker": (enc.KIND_TICKER, _encode_ticker, _ticker_rows),
    "trade": (enc.KIND_TRADE, enc.trade, _single),
    "diff": (enc.KIND_BOOK_DIFF, enc.book_diff, _single),
    "market_depth": (enc.KIND_DEPTH, enc.depth, _single),
    "order": (enc.KIND_ORDER, enc.order_update, _private_of(ws_events.OrderUpdate)),
    "wallet": (enc.KIND_WALLET, enc.wallet_update, _private_of(ws_events.WalletUpdate)),
}


class StreamHub:
    """Owns the TopicChannels: creates one on first use, registers it with its feed once."""

    def __init__(self, public: TopicFeed, private: Callable[[str], AccountFeed]) -> None:
        self._public = public
        self._private = private
        self._channels: dict[tuple[str, str], TopicChannel] = {}
        self.stats = DropStats()  # shared by every channel, so it outlives them

    def channel_count(self) -> int:
        return len(self._channels)

    def consumer_count(self) -> int:
        return sum(len(c.targets) for c in self._channels.values())

    async def join_all(self, delivery: Delivery, wants: list[tuple[str, str, Target]]) -> None:
        """Attach `delivery` to each (channel, topic); on failure undo what was joined.

        `topic` is an ALP topic for public channels and an account name for private ones.
        """
        joined: list[tuple[str, str, Target]] = []
        try:
            for want in wants:
                joined.append(want)  # before the await: a cancel there must undo this one too
                await self._join(want[0], want[1], delivery, want[2])
        except BaseException:
            await self.leave_all(delivery, joined)
            raise

    async def leave_all(self, delivery: Delivery, wants: list[tuple[str, str, Target]]) -> None:
        for channel_name, topic, _ in wants:
            await self._leave(channel_name, topic, delivery)

    async def _join(self, name: str, topic: str, delivery: Delivery, target: Target) -> None:
        key = (name, topic)
        channel = self._channels.get(key)
        if channel is None:
            kind, encoder, split = CHANNELS[name]
            channel = TopicChannel(kind, encoder, split, stats=self.stats)
            self._channels[key] = channel
        registered = channel.registered
        channel.add(delivery, target)
        if not registered:
            # the feed's answer to the registration (SUBSCRIBED when live, or the ack later)
            # reaches every target the channel has by then, this one included
            await asyncio.shield(self._registration(name, topic, channel))
        elif self._live(name, topic):
            # Joining a topic that is already flowing: tell this consumer alone it is subscribed.
            channel.status_to(delivery, "subscribed", (topic,))
        elif channel.last_state == "reconnecting":
            # Its upstream is down (or was never reached): the others heard it, so does this one.
            channel.status_to(delivery, "reconnecting", (topic,))

    def _registration(self, name: str, topic: str, channel: TopicChannel) -> asyncio.Task[None]:
        task = channel.registration
        if task is None or (task.done() and not channel.registered):  # none yet, or it failed
            task = channel.registration = asyncio.get_running_loop().create_task(
                self._register(name, topic, channel), name=f"hub:register:{name}:{topic}"
            )
            task.add_done_callback(_retrieved)
        return task

    async def _register(self, name: str, topic: str, channel: TopicChannel) -> None:
        if name in ("order", "wallet"):
            await self._private(topic).add(channel)
        else:
            await self._public.add(topic, channel)
        channel.registered = True
        if self._channels.get((name, topic)) is not channel:  # every consumer left meanwhile
            await self._unregister(name, topic, channel)

    async def _unregister(self, name: str, topic: str, channel: TopicChannel) -> None:
        channel.registered = False
        if name in ("order", "wallet"):
            await self._private(topic).remove(channel)
        else:
            await self._public.remove(topic, channel)

    def _live(self, name: str, topic: str) -> bool:
        if name in ("order", "wallet"):
            return self._private(topic).is_live()
        return self._public.is_live(topic)

    async def _leave(self, name: str, topic: str, delivery: Delivery) -> None:
        key = (name, topic)
        channel = self._channels.get(key)
        if channel is None:
            return
        channel.remove(delivery)
        if not channel.targets:
            del self._channels[key]
            if channel.registered:  # else its registration lets go of the feed when it ends
                await self._unregister(name, topic, channel)


def _retrieved(task: asyncio.Task[None]) -> None:
    """A registration whose joiners all went away: its failure is logged, not left unretrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("stream hub: registering a channel with its feed failed: %r", task.exception())
