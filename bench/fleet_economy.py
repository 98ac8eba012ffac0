"""What ALP sees of a fleet: 3 gateway members, 1,000 streams over 10 topics (+ private streams).

    .venv/bin/python -m bench.fleet_economy [--streams 1000] [--members 3]

Runs twice against one in-process sandbox (its counters are the measurement): three `alp-gateway
serve` processes without Redis (islands: the baseline), then the same three as one fleet on a
fresh redis-server. Streams are spread round-robin over the members; each is a Subscribe of one
topic (trade.PAIR and diff.PAIR of the sandbox's 5 pairs = 10 topics), plus 3 StreamOrderUpdates
per member for one account. Prints upstream subscriptions, sockets, WebSocket logins and
POST /auth for both runs, and checks that an injected trade reaches every trade stream once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from alp.v3 import stream_pb2, stream_pb2_grpc

from bench._util import ROOT, free_port, machine, redis_server
from gateway.sandbox import Sandbox, SandboxConfig

PAIRS = ("BTC_USDT", "ETH_USDT", "ETH_BTC", "LTC_USDT", "SOL_USDT")
TOPICS = [(stream_pb2.CHANNEL_TRADES, p) for p in PAIRS] + [
    (stream_pb2.CHANNEL_BOOK_DIFFS, p) for p in PAIRS
]
PRIVATE_PER_MEMBER = 3


@contextlib.contextmanager
def members(sandbox: Sandbox, count: int, redis_url: str) -> Iterator[list[int]]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'generated'}",
        "ALP_GATEWAY_UPSTREAM_REST_URL": sandbox.rest_url,
        "ALP_GATEWAY_UPSTREAM_WS_URL": sandbox.ws_url,
        "ALP_GATEWAY_ACCOUNT_DEMO_API_KEY": "demo-key",
        "ALP_GATEWAY_ACCOUNT_DEMO_API_SECRET": "demo-secret",
        "ALP_GATEWAY_CLUSTER_REDIS_URL": redis_url,
        "ALP_GATEWAY_UPSTREAM_PUBLIC_RPS": "0",
        "ALP_GATEWAY_UPSTREAM_PRIVATE_RPS": "0",
        "ALP_GATEWAY_METRICS_ENABLED": "false",
        "ALP_GATEWAY_HEALTH_HTTP_PORT": "0",
        "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
        "ALP_GATEWAY_AUDIT_PATH": "",
        "ALP_GATEWAY_LOG_LEVEL": "WARNING",
    }
    ports = [free_port() for _ in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--dev-mode", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def serving(port: int) -> None:
    for _ in range(600):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), 0.5)
                return
            except TimeoutError:
                pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"gateway on {port} did not start")


@contextlib.asynccontextmanager
async def channels(ports: list[int], per_member: int = 4) -> AsyncIterator[list[Any]]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
            )
            for port in ports
            for _ in range(per_member)
        ]
        yield opened


async def first_status(call: Any) -> None:
    async for message in call:
        events = getattr(message, "events", None)
        if (
            message.HasField("status")
            if events is None
            else any(e.HasField("status") for e in events)
        ):
            return
    raise RuntimeError("stream ended before its first status")


async def one_run(sandbox: Sandbox, streams: int, count: int, redis_url: str) -> dict[str, Any]:
    before = (
        sum(sandbox.stats.ws_subscribe_commands.values()),
        sandbox.stats.ws_connections_total,
        sandbox.stats.ws_auth_commands,
        sandbox.stats.auth_calls,
    )
    with members(sandbox, count, redis_url) as ports:
        await asyncio.gather(*(serving(port) for port in ports))
        async with channels(ports) as opened:
            calls = []
            for n in range(streams):
                channel, pair = TOPICS[n % len(TOPICS)]
                stub = stream_pb2_grpc.StreamServiceStub(opened[n % len(opened)])
                request = stream_pb2.SubscribeRequest(
                    topics=[stream_pb2.Topic(channel=channel, pair=pair)]
                )
                calls.append(
                    (pair if channel == stream_pb2.CHANNEL_TRADES else "", stub.Subscribe(request))
                )
            private = [
                stream_pb2_grpc.StreamServiceStub(opened[m * 4]).StreamOrderUpdates(
                    stream_pb2.StreamOrderUpdatesRequest(), metadata=(("x-alp-account", "demo"),)
                )
                for m in range(count)
                for _ in range(PRIVATE_PER_MEMBER)
            ]
            started = time.monotonic()
            await asyncio.gather(
                *(first_status(c) for _, c in calls), *(first_status(c) for c in private)
            )
            settled = time.monotonic() - started
            await asyncio.sleep(1.0)  # anything late (a second subscription) would show by now
            subscriptions = sum(sandbox.stats.ws_subscribe_commands.values()) - before[0]
            sockets = sandbox.stats.ws_open
            for n, pair in enumerate(PAIRS):
                frame = json.dumps(["t", int(time.time()), 1000 + n, pair, "0.1", "100", "buy"])
                await sandbox.inject_ws_frame(frame, topic=f"trade.{pair}")
            trade_calls = [(pair, c) for pair, c in calls if pair]
            got = await asyncio.gather(*(next_trade(c) for _, c in trade_calls))
            delivered = sum(
                1
                for (pair, _), tid in zip(trade_calls, got, strict=True)
                if tid == 1000 + PAIRS.index(pair)
            )
            for _, call in calls:
                call.cancel()
            for call in private:
                call.cancel()
    return {
        "subscriptions": subscriptions,
        "topics": len(TOPICS),
        "sockets_open": sockets,
        "ws_logins": sandbox.stats.ws_auth_commands - before[2],
        "auth_calls": sandbox.stats.auth_calls - before[3],
        "streams": streams + count * PRIVATE_PER_MEMBER,
        "trade_streams": len(trade_calls),
        "trades_delivered": delivered,
        "settle_s": settled,
    }


async def next_trade(call: Any) -> int:
    async def read() -> int:
        async for message in call:
            for event in message.events:
                if event.HasField("trade"):
                    return int(event.trade.trade_id)
        return -1

    try:
        return await asyncio.wait_for(read(), 10.0)
    except TimeoutError:
        return -1


async def measure(streams: int, count: int) -> None:
    print(f"# {machine()}")
    print(
        f"# {count} members, {streams} public streams over {len(TOPICS)} topics, "
        f"{count * PRIVATE_PER_MEMBER} private streams of one account"
    )
    rows = []
    async with Sandbox(SandboxConfig(market=False)) as sandbox:
        rows.append(("islands (no Redis)", await one_run(sandbox, streams, count, "")))
        await asyncio.sleep(1.0)
        with redis_server() as url:
            rows.append(("fleet (Redis)", await one_run(sandbox, streams, count, url)))
    want_sockets = math.ceil(len(TOPICS) / 20) + 1
    print()
    print(
        "| run | upstream subscriptions | sockets open | WS logins | POST /auth | "
        "trade streams that got the trade | all subscribed in |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['subscriptions']} (topics: {r['topics']}) | {r['sockets_open']} | "
            f"{r['ws_logins']} | {r['auth_calls']} | {r['trades_delivered']}/{r['trade_streams']} "
            f"| {r['settle_s']:.2f} s |"
        )
    fleet = rows[-1][1]
    print()
    print(
        f"goal: subscriptions = {len(TOPICS)}, sockets = ceil({len(TOPICS)}/20) + private = "
        f"{want_sockets}, /auth = 1 per token lifetime"
    )
    print(
        "met"
        if (fleet["subscriptions"], fleet["sockets_open"], fleet["auth_calls"])
        == (len(TOPICS), want_sockets, 1)
        else "NOT met"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--members", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.streams, args.members))


if __name__ == "__main__":
    main()
