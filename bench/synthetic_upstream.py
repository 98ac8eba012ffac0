"""A synthetic ALP WebSocket upstream for fan-out benchmarks (own process).

Speaks the ALP protocol (welcome, subscribe acks, `t` frames) and publishes `rate` trades per
second per subscribed `trade.PAIR` topic. The frame timestamp carries microseconds so clients can
measure upstream-frame-to-receipt latency. Prints subscription statistics on SIGTERM: connections,
subscribe commands per topic, the most sockets subscribed to one topic at once (a fleet whose members
each subscribe shows one per member), frames sent and the seconds spent publishing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import Counter

from aiohttp import WSMsgType, web

subscribes: Counter[str] = Counter()
connections_total = 0
sockets: dict[web.WebSocketResponse, set[str]] = {}
peak_subscribers: Counter[str] = Counter()  # most sockets subscribed to a topic at the same time
frames_sent = 0
published_s = 0.0


async def handle(request: web.Request) -> web.WebSocketResponse:
    global connections_total
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    connections_total += 1
    sockets[ws] = set()
    await ws.send_str(json.dumps(["welcome", int(time.time()), 20000, 40000, "bench"]))
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            frame = json.loads(message.data)
            if frame[0] == "subscribe":
                sockets[ws].update(frame[1:])
                subscribes.update(frame[1:])
                for topic in frame[1:]:
                    holders = sum(topic in topics for topics in sockets.values())
                    peak_subscribers[topic] = max(peak_subscribers[topic], holders)
                await ws.send_str(json.dumps(["subscribe", int(time.time()), *frame[1:]]))
            elif frame[0] == "unsubscribe":
                sockets[ws].difference_update(frame[1:])
                await ws.send_str(json.dumps(["unsubscribe", int(time.time()), *frame[1:]]))
    sockets.pop(ws, None)
    return ws


GO = asyncio.Event()  # publishing starts on SIGUSR1, once every client is subscribed


async def publish(rate: float) -> None:
    global frames_sent, published_s
    await GO.wait()
    began = time.perf_counter()
    trade_id = 0
    tick = 0.002
    carry = 0.0
    next_at = time.perf_counter()
    while True:
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        carry += rate * tick
        count, carry = int(carry), carry - int(carry)
        for ws, topics in list(sockets.items()):
            for topic in topics:
                pair = topic.partition(".")[2]
                for _ in range(count):
                    trade_id += 1
                    frame = f'["t",{time.time():.6f},{trade_id},"{pair}","0.01","30000.5","buy"]'
                    try:
                        await ws.send_str(frame)
                    except ConnectionError:
                        break
                    frames_sent += 1
        published_s = time.perf_counter() - began


async def main(rate: float) -> None:
    app = web.Application()
    app.add_routes([web.get("/ws", handle)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"synthetic upstream ws://127.0.0.1:{port}/ws", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, GO.set)
    publisher = asyncio.create_task(publish(rate))
    await stop.wait()
    publisher.cancel()
    print(
        json.dumps(
            {
                "connections_total": connections_total,
                "subscribe_commands": dict(subscribes),
                "peak_subscribers": dict(peak_subscribers),
                "frames_sent": frames_sent,
                "published_s": round(published_s, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0, help="trades per second per topic")
    uvloop.run(main(parser.parse_args().rate))
