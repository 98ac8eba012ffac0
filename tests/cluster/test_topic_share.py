"""One upstream subscription per topic for the whole fleet: three gateway members (real Gateways,
real gRPC streams, one sandbox, one redis-server) share each topic through its holder; a holder
leaving or dying is taken over with RECONNECTING then RESYNCED; Redis trouble falls back to
each member's own subscriptions and recovers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

import grpc
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc
from redis.asyncio import Redis

from gateway.app import Gateway
from gateway.cluster.redis_conn import connect
from gateway.cluster.topic_share import Role, SharedFeed
from gateway.core import event_wire
from gateway.core.stream_state import StreamState
from gateway.sandbox import Sandbox
from tests.cluster.conftest import RedisServer
from tests.gateway.conftest import gateway_config
from tests.gateway.test_streams import place

LEASE_S = 1.0
PAIRS = ("BTC_USDT", "ETH_USDT", "ETH_BTC", "LTC_USDT", "SOL_USDT")
SUBSCRIBED = stream_pb2.STREAM_STATE_SUBSCRIBED
RECONNECTING = stream_pb2.STREAM_STATE_RECONNECTING
RESYNCED = stream_pb2.STREAM_STATE_RESYNCED


def trade_frame(pair: str, trade_id: int) -> str:
    return json.dumps(["t", int(time.time()), trade_id, pair, "0.1", "30000.5", "buy"])


class Reader:
    """A StreamTrades call read in the background: every trade id and status, with their times."""

    def __init__(self, channel: grpc.aio.Channel, pair: str) -> None:
        self.pair = pair
        self.call = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
            stream_pb2.StreamTradesRequest(pairs=[pair])
        )
        self.trades: list[int] = []
        self.states: list[tuple[int, float]] = []
        self.ended: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.call:
                if message.HasField("status"):
                    self.states.append((message.status.state, time.monotonic()))
                self.trades.extend(t.trade_id for t in message.trades)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.ended = exc

    def state_list(self) -> list[int]:
        return [state for state, _ in self.states]

    async def wait(self, check: Callable[[], bool], within: float = 5.0) -> None:
        stop_at = time.monotonic() + within
        while not check():
            if time.monotonic() > stop_at:
                raise AssertionError(
                    f"{self.pair}: waited {within}s; states {self.state_list()}, trades "
                    f"{self.trades}, ended {self.ended}"
                )
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def share_of(gateway: Gateway) -> SharedFeed:
    assert gateway.shared_feed is not None
    return gateway.shared_feed


@contextlib.asynccontextmanager
async def fleet(
    sandbox: Sandbox, redis_url: str, size: int = 3
) -> AsyncIterator[tuple[list[Gateway], list[grpc.aio.Channel]]]:
    async with contextlib.AsyncExitStack() as stack:
        members: list[Gateway] = []
        channels: list[grpc.aio.Channel] = []
        for _ in range(size):
            config = gateway_config(
                sandbox, cluster__redis_url=redis_url, cluster__topic_lease_s=LEASE_S
            )
            member = await stack.enter_async_context(Gateway(config))
            members.append(member)
            channels.append(
                await stack.enter_async_context(
                    grpc.aio.insecure_channel(f"127.0.0.1:{member.port}")
                )
            )
        yield members, channels


async def open_readers(channels: list[grpc.aio.Channel], per_pair: int = 2) -> list[Reader]:
    readers = [Reader(ch, pair) for ch in channels for pair in PAIRS for _ in range(per_pair)]
    for reader in readers:
        await reader.wait(lambda r=reader: SUBSCRIBED in r.state_list())  # type: ignore[misc]
    return readers


async def test_three_members_share_one_upstream_subscription_per_topic(
    sandbox: Sandbox, redis_url: str
) -> None:
    async with fleet(sandbox, redis_url) as (members, channels):
        readers = await open_readers(channels)
        topics = {f"trade.{pair}" for pair in PAIRS}
        assert dict(sandbox.stats.ws_subscribe_commands) == dict.fromkeys(topics, 1)
        assert sandbox.stats.ws_open == 1  # the fleet's 5 topics on one socket (20 a socket)
        holders = [m for m in members if share_of(m).held()]
        assert len(holders) == 1 and set(share_of(holders[0]).held()) == topics
        for member in members:
            if member is not holders[0]:
                assert set(share_of(member).followed()) == topics
        for n, pair in enumerate(PAIRS):
            assert await sandbox.inject_ws_frame(trade_frame(pair, 100 + n), topic=f"trade.{pair}")
        for reader in readers:  # every stream on every member: its trade, exactly once
            await reader.wait(lambda r=reader: len(r.trades) >= 1)  # type: ignore[misc]
        await asyncio.sleep(0.2)  # a duplicate would arrive within this
        for reader in readers:
            assert reader.trades == [100 + PAIRS.index(reader.pair)], reader.pair
            assert reader.state_list() == [SUBSCRIBED] and reader.ended is None
        for reader in readers:
            await reader.close()


async def test_a_leaving_holder_hands_over_with_reconnecting_then_resynced(
    sandbox: Sandbox, redis_url: str
) -> None:
    async with fleet(sandbox, redis_url) as (members, channels):
        first = Reader(channels[0], "BTC_USDT")  # member 0 wants it first: it leads and holds
        await first.wait(lambda: SUBSCRIBED in first.state_list())
        others = [Reader(ch, "BTC_USDT") for ch in channels[1:]]
        for reader in others:
            await reader.wait(lambda r=reader: SUBSCRIBED in r.state_list())  # type: ignore[misc]
        assert share_of(members[0]).held() == ("trade.BTC_USDT",)
        left_at = time.monotonic()
        await members[0].stop(grace_s=0.1)
        for reader in others:
            await reader.wait(
                lambda r=reader: r.state_list()[-2:] == [RECONNECTING, RESYNCED],  # type: ignore[misc]
                within=LEASE_S + 1.0,
            )
            assert reader.state_list() == [SUBSCRIBED, RECONNECTING, RESYNCED]
            assert reader.states[-1][1] - left_at < LEASE_S + 1.0
        new_holders = [m for m in members[1:] if share_of(m).held()]
        assert len(new_holders) == 1 and share_of(new_holders[0]).stats.handovers == 1
        assert sandbox.stats.ws_subscribe_commands["trade.BTC_USDT"] == 2  # one per holder
        assert await sandbox.inject_ws_frame(trade_frame("BTC_USDT", 7), topic="trade.BTC_USDT")
        for reader in others:
            await reader.wait(lambda r=reader: r.trades == [7])  # type: ignore[misc]
            await reader.close()
        await first.close()


async def test_members_without_consumers_release_the_topic(
    sandbox: Sandbox, redis_url: str
) -> None:
    async with fleet(sandbox, redis_url, size=2) as (members, channels):
        readers = [Reader(ch, "ETH_USDT") for ch in channels]
        for reader in readers:
            await reader.wait(lambda r=reader: SUBSCRIBED in r.state_list())  # type: ignore[misc]
        for reader in readers:
            await reader.close()
        for member in members:
            share = share_of(member)
            await readers[0].wait(lambda s=share: not s.roles(), within=5.0)  # type: ignore[misc]
        await readers[0].wait(
            lambda: sandbox.stats.ws_unsubscribe_commands["trade.ETH_USDT"] == 1, within=3.0
        )


async def test_redis_outage_falls_back_to_own_subscriptions_and_recovers(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> None:
    async with fleet(sandbox, own_redis_server.url, size=2) as (members, channels):
        readers = [Reader(ch, "SOL_USDT") for ch in channels]
        for reader in readers:
            await reader.wait(lambda r=reader: SUBSCRIBED in r.state_list())  # type: ignore[misc]
        roles = [share_of(m).roles() for m in members]
        assert sorted(r["trade.SOL_USDT"] for r in roles) == [Role.FOLLOWER, Role.HOLDER]
        at = 0 if roles[1]["trade.SOL_USDT"] is Role.HOLDER else 1  # the follower's index
        follower = members[at]
        own_redis_server.stop()
        await readers[0].wait(lambda: share_of(follower).degraded, within=LEASE_S + 2.0)
        await readers[0].wait(
            lambda: share_of(follower).roles() == {"trade.SOL_USDT": Role.LOCAL}, within=3.0
        )
        await readers[0].wait(lambda: sandbox.stats.ws_subscribe_commands["trade.SOL_USDT"] == 2)
        # the follower's consumers saw the switch, the holder's saw nothing; data keeps flowing
        switched = readers[at]
        await switched.wait(lambda: switched.state_list() == [SUBSCRIBED, RECONNECTING, RESYNCED])
        assert readers[1 - at].state_list() == [SUBSCRIBED]
        assert await sandbox.inject_ws_frame(trade_frame("SOL_USDT", 11), topic="trade.SOL_USDT")
        for reader in readers:
            await reader.wait(lambda r=reader: r.trades == [11])  # type: ignore[misc]
        await asyncio.sleep(LEASE_S * 3)  # a long outage: many ticks and reads fail meanwhile
        for member in members:  # degraded, not failing: nothing restarts, health is not touched
            loops = {loop.name: loop for loop in member.supervisor.status()}
            assert not member.supervisor.failing()
            assert all(loops[n].restarts == 0 for n in ("fleet:topics", "fleet:relay-in"))
            assert member.state().fleet.degraded
        own_redis_server.start()
        await readers[0].wait(
            lambda: (
                not share_of(follower).degraded
                and sorted(share_of(m).roles()["trade.SOL_USDT"] for m in members)
                == sorted([Role.HOLDER, Role.FOLLOWER])
            ),
            within=LEASE_S * 3 + 2.0,
        )
        assert await sandbox.inject_ws_frame(trade_frame("SOL_USDT", 12), topic="trade.SOL_USDT")
        for reader in readers:
            try:
                await reader.wait(lambda r=reader: r.trades[-1:] == [12])  # type: ignore[misc]
            except AssertionError as exc:
                shares = [share_of(m) for m in members]
                seen = [(s.roles(), s.stats, s._followed, s.degraded) for s in shares]
                raise AssertionError(f"{exc}; members: {seen}") from None
            assert reader.trades.count(12) == 1 and reader.ended is None
            await reader.close()


async def test_an_accounts_private_socket_is_one_for_the_fleet(
    sandbox: Sandbox, redis_url: str
) -> None:
    async with fleet(sandbox, redis_url) as (members, channels):
        calls = [
            stream_pb2_grpc.StreamServiceStub(ch).StreamOrderUpdates(
                stream_pb2.StreamOrderUpdatesRequest(), metadata=(("x-alp-account", "demo"),)
            )
            for ch in channels
        ]
        for call in calls:
            first = await asyncio.wait_for(call.read(), 5.0)
            assert first.status.state == SUBSCRIBED
        assert sandbox.stats.ws_auth_commands == 1  # one login, on one socket, for three members
        assert sandbox.stats.ws_open == 1
        assert sum(len(share_of(m).held()) for m in members) == 1
        order_id = await place(channels[2], common_pb2.ORDER_SIDE_BUY, "0.01", "1000")
        for call in calls:  # every member's consumer: the order, once
            message = await asyncio.wait_for(call.read(), 5.0)
            assert [o.order_id for o in message.orders] == [order_id]
            assert message.orders[0].base_amount == "0.01"  # exact through the relay
        for call in calls:
            call.cancel()


async def test_a_topic_the_leader_cannot_serve_is_taken_by_a_member_that_wants_it(
    sandbox: Sandbox, redis_url: str
) -> None:
    """The leader lacks account demo: it never claims private:demo; after a lease without a
    holder the member whose consumer wants it takes it itself."""
    full = gateway_config(sandbox, cluster__redis_url=redis_url, cluster__topic_lease_s=LEASE_S)
    partial = full.with_accounts({"desk-b": full.accounts["desk-b"]}).with_overrides(
        accounts__default="desk-b"
    )
    async with Gateway(partial) as leader, Gateway(full) as member:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{leader.port}") as to_leader,
            grpc.aio.insecure_channel(f"127.0.0.1:{member.port}") as to_member,
        ):
            first = Reader(to_leader, "BTC_USDT")  # the partial member wants first: it leads
            await first.wait(lambda: SUBSCRIBED in first.state_list())
            assert share_of(leader).leader == share_of(leader).member_id
            call = stream_pb2_grpc.StreamServiceStub(to_member).StreamOrderUpdates(
                stream_pb2.StreamOrderUpdatesRequest(), metadata=(("x-alp-account", "demo"),)
            )
            asked = time.monotonic()
            status = await asyncio.wait_for(call.read(), LEASE_S * 3 + 2.0)
            assert status.status.state == SUBSCRIBED
            assert time.monotonic() - asked >= LEASE_S * 0.9  # it waited a lease for the leader
            assert share_of(member).held() == ("private:demo",)
            assert "private:demo" not in share_of(leader).roles()
            call.cancel()
            await first.close()


async def test_a_topic_alp_refuses_ends_the_streams_of_every_member_even_later_ones(
    sandbox: Sandbox, redis_url: str
) -> None:
    """The holder relays ALP's "Topic does not exist" and lets the topic go, so a consumer that
    asks afterwards on another member hears the refusal afresh instead of waiting forever."""
    async with fleet(sandbox, redis_url, size=2) as (members, channels):

        async def refused(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError:
            call = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
                stream_pb2.StreamTradesRequest(pairs=["NOPE_USDT"])
            )
            try:
                async with asyncio.timeout(LEASE_S * 3 + 3):
                    async for _ in call:
                        pass
            except grpc.aio.AioRpcError as exc:
                return exc
            raise AssertionError("the stream ended without an error")

        together = await asyncio.gather(refused(channels[0]), refused(channels[1]))
        later = await refused(channels[1])
        for error in (*together, later):
            assert error.code() is grpc.StatusCode.NOT_FOUND
            assert "NOPE_USDT" in (error.details() or "")
        stop_at = time.monotonic() + LEASE_S * 2  # and no member keeps holding it
        while any("trade.NOPE_USDT" in share_of(m).roles() for m in members):
            assert time.monotonic() < stop_at, [share_of(m).roles() for m in members]
            await asyncio.sleep(0.05)


async def test_a_gap_in_the_holders_numbering_is_a_resync_and_garbage_is_counted(
    sandbox: Sandbox, redis_url: str, redis_client: Redis
) -> None:
    async with fleet(sandbox, redis_url, size=2) as (members, channels):
        first = Reader(channels[0], "LTC_USDT")  # member 0 wants it first: it holds
        await first.wait(lambda: SUBSCRIBED in first.state_list())
        follower = Reader(channels[1], "LTC_USDT")
        await follower.wait(lambda: SUBSCRIBED in follower.state_list())
        share = share_of(members[1])
        assert share.roles() == {"trade.LTC_USDT": Role.FOLLOWER}
        assert await sandbox.inject_ws_frame(trade_frame("LTC_USDT", 5), topic="trade.LTC_USDT")
        await follower.wait(lambda: follower.trades == [5])  # numbering known from here on
        channel = "alp-gateway:topic:trade.LTC_USDT"
        await redis_client.publish(channel, b"\xff not a record")
        await follower.wait(lambda: share.stats.undecodable == 1)
        assert follower.state_list() == [SUBSCRIBED]  # garbage changes nothing
        holder = share_of(members[0]).member_id
        skipped = share_of(members[0])._topics["trade.LTC_USDT"].seq_out + 5
        await redis_client.publish(
            channel, event_wire.encode_status(holder, skipped, StreamState.SUBSCRIBED)
        )
        await follower.wait(lambda: follower.state_list() == [SUBSCRIBED, RECONNECTING, RESYNCED])
        assert share.stats.gaps == 1 and first.state_list() == [SUBSCRIBED]
        await follower.close()
        await first.close()


async def test_a_new_follower_hears_subscribed_after_a_redis_restart(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> None:
    """Redis restarts (no persistence: every key is gone). The holder takes its lease and the
    leadership back; its upstream never changed state, so it published no status. A consumer that asks afterwards on another member
    follows the holder and waited for a SUBSCRIBED that never came (trades did arrive); the
    holder now writes `live` again whenever Redis disagrees with its subscription."""
    url = own_redis_server.url
    async with (
        Gateway(
            gateway_config(sandbox, cluster__redis_url=url, cluster__topic_lease_s=LEASE_S)
        ) as holder,
        Gateway(
            gateway_config(sandbox, cluster__redis_url=url, cluster__topic_lease_s=LEASE_S)
        ) as other,
        grpc.aio.insecure_channel(f"127.0.0.1:{holder.port}") as to_holder,
        grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as to_other,
    ):
        first = Reader(to_holder, "BTC_USDT")
        await first.wait(lambda: SUBSCRIBED in first.state_list())
        assert share_of(holder).held() == ("trade.BTC_USDT",)
        own_redis_server.stop()
        await first.wait(lambda: share_of(holder).degraded, within=LEASE_S + 3.0)
        own_redis_server.start()
        client = connect(url)
        try:
            holder_id = share_of(holder).member_id.encode()
            key = "alp-gateway:topic:trade.BTC_USDT:holder"

            async def held_again() -> bool:
                with contextlib.suppress(Exception):
                    return bool(await client.get(key) == holder_id)
                return False

            stop_at = time.monotonic() + LEASE_S * 3 + 3.0
            while not (await held_again() and not share_of(holder).degraded):
                assert time.monotonic() < stop_at, "the holder never took its lease back"
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        late = Reader(to_other, "BTC_USDT")
        try:
            await late.wait(
                lambda: share_of(other).roles() == {"trade.BTC_USDT": Role.FOLLOWER}, within=3.0
            )
            await asyncio.sleep(0.1)  # its pubsub subscription is on
            assert await sandbox.inject_ws_frame(
                trade_frame("BTC_USDT", 41), topic="trade.BTC_USDT"
            )
            await late.wait(lambda: 41 in late.trades, within=LEASE_S * 3)  # the data flows...
            # ...but the stream never says it is subscribed
            await late.wait(lambda: SUBSCRIBED in late.state_list(), within=LEASE_S * 3 + 1.0)
        finally:
            await late.close()
            await first.close()


async def test_consumers_on_every_member_hear_reconnecting_while_alp_is_unreachable(
    sandbox: Sandbox, redis_url: str
) -> None:
    """No member can reach ALP's WebSocket: the holder's upstream says RECONNECTING for a topic
    that was never live; it is relayed, so a follower's consumer hears it too (not silence), and
    both hear RESYNCED and the trade once ALP is reachable."""
    from urllib.parse import urlsplit

    from tests.gateway.test_stream_waiting import Gate

    target = urlsplit(sandbox.ws_url)
    async with Gate(target.port or 0) as gate, contextlib.AsyncExitStack() as stack:
        channels = []
        for _ in range(2):
            config = gateway_config(
                sandbox,
                cluster__redis_url=redis_url,
                cluster__topic_lease_s=LEASE_S,
                upstream__ws_url=f"ws://127.0.0.1:{gate.port}{target.path}",
            )
            member = await stack.enter_async_context(Gateway(config))
            channels.append(
                await stack.enter_async_context(
                    grpc.aio.insecure_channel(f"127.0.0.1:{member.port}")
                )
            )
        readers = [Reader(channel, "BTC_USDT") for channel in channels]
        try:
            for reader in readers:
                await reader.wait(lambda r=reader: r.state_list() == [RECONNECTING], within=5.0)  # type: ignore[misc]
            gate.open = True
            for reader in readers:
                await reader.wait(lambda r=reader: RESYNCED in r.state_list(), within=5.0)  # type: ignore[misc]
            assert await sandbox.inject_ws_frame(
                trade_frame("BTC_USDT", 93), topic="trade.BTC_USDT"
            )
            for reader in readers:
                await reader.wait(lambda r=reader: r.trades == [93])  # type: ignore[misc]
                # RECONNECTING once, then RESYNCED once: nothing repeated, no SUBSCRIBED between
                assert reader.state_list() == [RECONNECTING, RESYNCED]
        finally:
            for reader in readers:
                await reader.close()
