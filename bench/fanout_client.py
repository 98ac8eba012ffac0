"""Fan-out client process: opens `streams` StreamTrades calls and counts what arrives.

Waits for every stream's SUBSCRIBED status, prints "ready", then after `start` seconds measures for
`duration` seconds and prints one JSON line: events, messages, latency percentiles (frame -> receipt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc
from alp.v3 import stream_pb2, stream_pb2_grpc

from bench._util import percentile


async def main(target: str, streams: int, per_channel: int, duration: float, pair: str) -> None:
    channels = [
        grpc.aio.insecure_channel(target) for _ in range(max(1, -(-streams // per_channel)))
    ]
    request = stream_pb2.StreamTradesRequest(pairs=[pair])
    counting = False
    events = messages = 0
    latencies: list[float] = []
    subscribed = 0
    all_subscribed = asyncio.Event()

    async def consume(index: int) -> None:
        nonlocal events, messages, subscribed
        stub = stream_pb2_grpc.StreamServiceStub(channels[index // per_channel])
        async for message in stub.StreamTrades(request):
            if message.HasField("status"):
                subscribed += 1
                if subscribed == streams:
                    all_subscribed.set()
                continue
            if counting:
                now = time.time()
                events += len(message.trades)
                messages += 1
                last = message.trades[0].time  # the oldest event of the batch: worst case
                latencies.append(now - (last.seconds + last.nanos / 1e9))

    tasks = [asyncio.create_task(consume(i)) for i in range(streams)]
    await asyncio.wait_for(all_subscribed.wait(), 120)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # wait for "go"
    await asyncio.sleep(1.0)  # settle
    counting = True
    began = time.perf_counter()
    await asyncio.sleep(duration)
    counting = False
    elapsed = time.perf_counter() - began
    result = {
        "streams": streams,
        "events": events,
        "messages": messages,
        "events_per_s": events / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }
    print(json.dumps(result), flush=True)
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close()


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--per-channel", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--pair", default="BTC_USDT")
    a = parser.parse_args()
    uvloop.run(main(a.target, a.streams, a.per_channel, a.duration, a.pair))
