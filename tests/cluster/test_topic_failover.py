"""Kill -9 the member holding a topic mid-stream: three `alp-gateway serve` processes share one
redis-server and one sandbox; the consumers on the two others resume within lease + 1 s, seeing
RECONNECTING then RESYNCED, their order books resnapshot with sequences still +1, and the topic
is subscribed upstream once more (by the new holder), not once per member."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from alp.v3 import gateway_service_pb2, gateway_service_pb2_grpc, stream_pb2, stream_pb2_grpc

from gateway.sandbox import Sandbox
from tests.cluster.conftest import ROOT, RedisServer, free_port, member_env
from tests.cluster.test_topic_share import RECONNECTING, RESYNCED, SUBSCRIBED, Reader

pytestmark = pytest.mark.slow
LEASE_S = 1.0


@contextlib.contextmanager
def member(sandbox: Sandbox, redis: RedisServer) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = member_env(sandbox, redis.url, cluster_topic_lease_s=str(LEASE_S), ws_linger_s="0.05")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--dev-mode"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def status(port: int) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        return await gateway_service_pb2_grpc.GatewayServiceStub(channel).GetStatus(
            gateway_service_pb2.GetStatusRequest(), timeout=2
        )


async def until_serving(port: int, within: float = 30.0) -> None:
    stop_at = time.monotonic() + within
    while True:
        try:
            await status(port)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > stop_at:
                raise
            await asyncio.sleep(0.1)


class BookReader:
    """A StreamOrderBook call read in the background: its updates (sequence, snapshot, resync)
    and statuses in arrival order."""

    def __init__(self, channel: grpc.aio.Channel, pair: str) -> None:
        self.call = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderBook(
            stream_pb2.StreamOrderBookRequest(pair=pair, depth=10)
        )
        self.log: list[tuple[str, int, bool, bool]] = []
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for message in self.call:
                if message.HasField("status"):
                    self.log.append(("status", message.status.state, False, False))
                for update in message.updates:
                    self.log.append(("update", update.sequence, update.snapshot, update.resync))

    def statuses(self) -> list[int]:
        return [entry[1] for entry in self.log if entry[0] == "status"]

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def collapse(states: list[int]) -> list[int]:
    return [s for n, s in enumerate(states) if n == 0 or states[n - 1] != s]


@pytest.fixture
async def channels(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> AsyncIterator[tuple[list[subprocess.Popen[bytes]], list[int], list[grpc.aio.Channel]]]:
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(member(sandbox, own_redis_server)) for _ in range(3)]
        processes, ports = [p for p, _ in started], [port for _, port in started]
        await asyncio.gather(*(until_serving(port) for port in ports))
        async with contextlib.AsyncExitStack() as channels:
            opened = [
                await channels.enter_async_context(grpc.aio.insecure_channel(f"127.0.0.1:{p}"))
                for p in ports
            ]
            yield processes, ports, opened


async def test_kill_9_of_the_holder_hands_its_topics_over_within_the_lease(
    sandbox: Sandbox,
    channels: tuple[list[subprocess.Popen[bytes]], list[int], list[grpc.aio.Channel]],
) -> None:
    processes, ports, opened = channels
    first = Reader(opened[0], "BTC_USDT")  # member 0 wants topics first: it leads and holds them
    await first.wait(lambda: SUBSCRIBED in first.state_list(), within=10.0)
    book0 = BookReader(opened[0], "BTC_USDT")
    await first.wait(lambda: SUBSCRIBED in book0.statuses(), within=10.0)
    trades = [Reader(ch, "BTC_USDT") for ch in opened[1:]]
    books = [BookReader(ch, "BTC_USDT") for ch in opened[1:]]
    for reader, book in zip(trades, books, strict=True):
        await reader.wait(lambda r=reader: SUBSCRIBED in r.state_list())  # type: ignore[misc]
        await reader.wait(lambda b=book: SUBSCRIBED in b.statuses())  # type: ignore[misc]
    held = (await status(ports[0])).fleet
    assert set(held.topics_held) == {"trade.BTC_USDT", "market_depth.BTC_USDT", "diff.BTC_USDT"}
    for port in ports[1:]:
        fleet = (await status(port)).fleet
        assert not fleet.topics_held and fleet.topics_followed == 3
        assert fleet.topic_leader == held.member_id
    subscribes = dict(sandbox.stats.ws_subscribe_commands)
    assert subscribes == {"trade.BTC_USDT": 1, "market_depth.BTC_USDT": 1, "diff.BTC_USDT": 1}

    killed_at = time.monotonic()
    os.kill(processes[0].pid, signal.SIGKILL)
    for reader in trades:
        await reader.wait(
            lambda r=reader: r.state_list() == [SUBSCRIBED, RECONNECTING, RESYNCED],  # type: ignore[misc]
            within=LEASE_S + 3.0,
        )
        resumed = reader.states[-1][1] - killed_at
        assert resumed < LEASE_S + 1.0, f"resumed {resumed:.2f}s after the kill"
    for book in books:  # RESYNCED, then a resnapshot flagged resync, sequences +1 throughout
        await trades[0].wait(
            lambda b=book: any(e[0] == "update" and e[3] for e in b.log),  # type: ignore[misc]
            within=5.0,
        )
        # one status per topic of the book (depth and diff), as after an upstream reconnect
        assert collapse(book.statuses()) == [SUBSCRIBED, RECONNECTING, RESYNCED]
        sequences = [e[1] for e in book.log if e[0] == "update"]
        assert sequences == list(range(1, len(sequences) + 1))
        resnapshot = next(e for e in book.log if e[0] == "update" and e[3])
        assert resnapshot[2]  # a full snapshot
    statuses = [(await status(port)).fleet for port in ports[1:]]
    holders = [s for s in statuses if s.topics_held]
    assert len(holders) == 1 and len(holders[0].topics_held) == 3
    assert all(s.topic_leader == holders[0].member_id for s in statuses)
    assert dict(sandbox.stats.ws_subscribe_commands) == dict.fromkeys(subscribes, 2)

    frame = json.dumps(["t", int(time.time()), 99, "BTC_USDT", "0.1", "30000.5", "buy"])
    assert await sandbox.inject_ws_frame(frame, topic="trade.BTC_USDT") == 1
    for reader in trades:
        await reader.wait(lambda r=reader: r.trades == [99])  # type: ignore[misc]
        await reader.close()
    for book in (*books, book0):
        await book.close()
    await first.close()
