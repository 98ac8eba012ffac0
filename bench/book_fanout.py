"""Order-book fan-out: N StreamOrderBook consumers of one book, per-consumer vs shared encoding.

    .venv/bin/python -m bench.book_fanout [--streams 1000] [--duration 8] [--repeats 2]
        [--rates 10,200] [--before REV] [--after REV]

A synthetic ALP upstream (own process: `--role upstream`) serves GET /orderbook and publishes
`market_depth.BTC_USDT` snapshots at a fixed rate, each changing a few of the 20 levels a side (amounts,
and now and then a level replaced by a deeper one). The gateway (own process) streams the book at
depth 20 to N consumers held by client processes (`--role client`), which apply every update, check
each stream's sequence, and measure deliveries/s and frame -> receipt latency (the oldest timed update
of each received message). The gateway's CPU time over the measurement window is read from /proc.

Before the network runs, `--role micro` measures each tree's work per snapshot in-process (a keeper
publishing to N streams whose Deliveries nobody reads: compare, encode, offer; no gRPC).

Same-run baseline: `--before` and `--after` are git revisions extracted with `git archive` into
/tmp/book-fanout-<rev>-<pid> and run from there (nothing in the working tree is touched). By default
`--before` is the parent of the commit that introduced gateway/rpc/book_stream.py (the last
per-consumer encoder) and `--after` is HEAD. The two are interleaved, `--repeats` times per rate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._util import PY, ROOT, machine, percentile, process

PAIR = "BTC_USDT"
LEVELS = 20


# -- the synthetic upstream (own process) ----------------------------------------------------------
class Book:
    """20 levels a side around 30,000; each step changes a few of them, deterministically."""

    def __init__(self, seed: int = 7) -> None:
        self.rand = random.Random(seed)
        self.bids = {30000 - i * 0.5: self._amount() for i in range(LEVELS)}
        self.asks = {30000.5 + i * 0.5: self._amount() for i in range(LEVELS)}

    def _amount(self) -> str:
        return f"{self.rand.randint(1, 500_000) / 100_000:.5f}"

    def step(self) -> None:
        for _ in range(3):
            side = self.bids if self.rand.random() < 0.5 else self.asks
            side[self.rand.choice(list(side))] = self._amount()
        if self.rand.random() < 0.2:  # a level goes, a deeper one comes: a removal and an add
            side = self.bids if self.rand.random() < 0.5 else self.asks
            del side[self.rand.choice(list(side))]
            deepest = min(side) - 0.5 if side is self.bids else max(side) + 0.5
            side[deepest] = self._amount()

    def levels(self, side: dict[float, str]) -> list[tuple[str, str]]:
        ordered = sorted(side, reverse=side is self.bids)
        return [(f"{price:.1f}", side[price]) for price in ordered]

    def frame(self) -> str:
        bids, asks = self.levels(self.bids), self.levels(self.asks)
        body = {
            "Asks": [[p, a] for p, a in asks],
            "Bids": [[p, a] for p, a in bids],
            "Symbol": PAIR,
            "TotalAsks": f"{sum(float(a) for _, a in asks):.5f}",
            "TotalBids": f"{sum(float(a) for _, a in bids):.5f}",
        }
        return f'["p",{time.time():.6f},{json.dumps(body)}]'  # microseconds: the latency clock

    def rest(self) -> dict[str, Any]:
        return {
            "buy": [{"price": p, "amount": a} for p, a in self.levels(self.bids)],
            "sell": [{"price": p, "amount": a} for p, a in self.levels(self.asks)],
        }


async def upstream_main(rate: float) -> None:
    from aiohttp import WSMsgType, web

    book = Book()
    sockets: dict[web.WebSocketResponse, set[str]] = {}
    published = 0
    go = asyncio.Event()  # publishing starts on SIGUSR1, once every consumer holds its snapshot

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sockets[ws] = set()
        await ws.send_str(json.dumps(["welcome", int(time.time() * 1000), 20000, 40000, "bench"]))
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                frame = json.loads(message.data)
                if frame[0] in ("subscribe", "unsubscribe"):
                    topics = set(frame[1:])
                    if frame[0] == "subscribe":
                        sockets[ws] |= topics
                    else:
                        sockets[ws] -= topics
                    await ws.send_str(json.dumps([frame[0], int(time.time()), *frame[1:]]))
        sockets.pop(ws, None)
        return ws

    async def orderbook(request: web.Request) -> web.Response:
        return web.json_response(book.rest())

    async def publish() -> None:
        nonlocal published
        await go.wait()
        tick = 1.0 / rate
        next_at = time.perf_counter()
        while True:
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            book.step()
            frame = book.frame()
            published += 1
            for ws, topics in list(sockets.items()):
                if f"market_depth.{PAIR}" in topics:
                    with contextlib.suppress(ConnectionError):
                        await ws.send_str(frame)

    app = web.Application()
    app.add_routes([web.get("/ws", ws_handler), web.get("/api/v3/orderbook", orderbook)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"book upstream http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    publisher = asyncio.create_task(publish())
    await stop.wait()
    publisher.cancel()
    print(json.dumps({"published": published}), flush=True)


# -- the consumers (client processes) --------------------------------------------------------------
async def client_main(target: str, streams: int, per_channel: int, duration: float) -> None:
    import grpc
    from alp.v3 import stream_pb2, stream_pb2_grpc

    channels = [grpc.aio.insecure_channel(target) for _ in range(-(-streams // per_channel))]
    request = stream_pb2.StreamOrderBookRequest(pair=PAIR, depth=LEVELS)
    counting = False
    deliveries = messages = resyncs = skipped = sequence_errors = 0
    latencies: list[float] = []
    seeded = 0
    all_seeded = asyncio.Event()

    async def consume(index: int) -> None:
        nonlocal deliveries, messages, resyncs, skipped, sequence_errors, seeded
        stub = stream_pb2_grpc.StreamServiceStub(channels[index // per_channel])
        last = 0
        async for message in stub.StreamOrderBook(request):
            if not message.updates:
                continue  # a status
            now = time.time()
            if not last:  # its first snapshot
                seeded += 1
                if seeded == streams:
                    all_seeded.set()
            for update in message.updates:
                if not update.resync and update.sequence != last + 1:
                    sequence_errors += 1
                last = update.sequence
            if counting:
                deliveries += len(message.updates)
                messages += 1
                skipped += message.skipped
                resyncs += sum(1 for u in message.updates if u.resync)
                timed = next((u.time for u in message.updates if u.HasField("time")), None)
                if timed is not None:  # the oldest timed update of the batch: worst case
                    latencies.append(now - (timed.seconds + timed.nanos / 1e9))

    tasks = [asyncio.create_task(consume(i)) for i in range(streams)]
    await asyncio.wait_for(all_seeded.wait(), 120)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    await asyncio.sleep(1.0)  # settle
    counting = True
    began = time.perf_counter()
    await asyncio.sleep(duration)
    counting = False
    elapsed = time.perf_counter() - began
    print(
        json.dumps(
            {
                "streams": streams,
                "deliveries": deliveries,
                "messages": messages,
                "resyncs": resyncs,
                "skipped": skipped,
                "sequence_errors": sequence_errors,
                "deliveries_per_s": deliveries / elapsed,
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
            }
        ),
        flush=True,
    )
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close(None)


# -- in-process: the gateway's work per snapshot alone (own process per tree) ---------------------
def micro_main(streams: int, snapshots: int = 200) -> None:
    """Median CPU time of one keeper publish to `streams` consumers whose Deliveries nobody reads:
    the compare, encode and offer work, without gRPC. Runs whichever tree is on sys.path."""
    from decimal import Decimal

    from gateway.core import ws_events
    from gateway.exchange.book_keeper import BookKeeper
    from gateway.rpc.stream_hub import DropStats

    book = Book()
    keeper = BookKeeper(PAIR, None, None)  # type: ignore[arg-type]  # never started

    def depth(ts: int) -> ws_events.Depth:
        def side(levels: list[tuple[str, str]]) -> tuple[tuple[Decimal, Decimal], ...]:
            return tuple((Decimal(p), Decimal(a)) for p, a in levels)

        asks, bids = side(book.levels(book.asks)), side(book.levels(book.bids))
        return ws_events.Depth(Decimal(ts), PAIR, asks, bids, None, None)

    keeper.on_event(f"market_depth.{PAIR}", depth(1))
    try:
        from gateway.rpc.book_stream import BookViews  # the shared view
    except ImportError:  # the per-consumer BookStream of stream.py
        per_consumer: Any = importlib.import_module("gateway.rpc.stream").BookStream
        opened = [
            per_consumer(keeper, LEVELS, 10**9, kind=0, stats=DropStats()) for _ in range(streams)
        ]
        for stream in opened:
            keeper.watch(stream)
    else:
        views = BookViews(DropStats())
        opened = [views.open(keeper, LEVELS, 0, 10**9) for _ in range(streams)]
    for stream in opened:
        stream.start()
    times = []
    for step in range(snapshots):
        book.step()
        event = depth(1767225600 + step)
        began = time.process_time()
        keeper.on_event(f"market_depth.{PAIR}", event)
        times.append(time.process_time() - began)
    print(json.dumps({"publish_ms": percentile(times, 50) * 1000}), flush=True)


def micro(tree: Path, streams: int) -> float:
    """`micro_main` in its own process on `tree`'s gateway (extract() put this bench in it)."""
    out = subprocess.run(
        [PY, "-P", "-m", "bench.book_fanout", "--role", "micro", "--streams", str(streams)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=f"{tree}:{tree / 'generated'}"),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["publish_ms"])


async def _in_loop(function: Any, *args: Any) -> None:
    function(*args)


# -- the driver -----------------------------------------------------------------------------------
def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def extract(rev: str) -> Path:
    """`rev` as a plain tree in /tmp (git archive: no worktree, nothing in the checkout moves)."""
    sha = _git("rev-parse", "--short", rev)
    where = Path(f"/tmp/book-fanout-{sha}-{os.getpid()}")
    if not where.exists():
        where.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
        shutil.rmtree(where / "bench")  # this benchmark, whatever the revision had
        shutil.copytree(
            ROOT / "bench", where / "bench", ignore=shutil.ignore_patterns("__pycache__")
        )
    return where


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(tree: Path, streams: int, rate: float, duration: float) -> dict[str, Any]:
    clients = 1 if streams <= 100 else 2
    with (
        process(
            [PY, "-m", "bench.book_fanout", "--role", "upstream", "--rate", str(rate)],
            {"url": r"book upstream (http://[\d.:]+)"},
        ) as (upstream_proc, upstream),
        process(
            # -P: the tree's `gateway` from PYTHONPATH, not the checkout's from the working directory
            [PY, "-P", "-m", "gateway", "serve", "--dev-mode", "--port", "0"],
            {"target": r"serving gRPC on ([\d.]+:\d+)"},
            {
                "PYTHONPATH": f"{tree}:{tree / 'generated'}",
                "ALP_GATEWAY_UPSTREAM_WS_URL": upstream["url"].replace("http", "ws") + "/ws",
                "ALP_GATEWAY_UPSTREAM_REST_URL": upstream["url"] + "/api/v3",
                "ALP_GATEWAY_UPSTREAM_PUBLIC_RPS": "0",
                "ALP_GATEWAY_METRICS_ENABLED": "false",
                "ALP_GATEWAY_AUDIT_PATH": "",
                "ALP_GATEWAY_LOG_LEVEL": "ERROR",
                "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
            },
        ) as (gateway_proc, gw),
    ):
        procs = [
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "bench.book_fanout",
                    "--role",
                    "client",
                    "--target",
                    gw["target"],
                    "--streams",
                    str(streams // clients),
                    "--duration",
                    str(duration),
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(clients)
        ]
        for proc in procs:  # every consumer holds its first snapshot before anything changes
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"client not ready: {line!r} {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        upstream_proc.send_signal(signal.SIGUSR1)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        time.sleep(1.0)  # the clients' settle second
        cpu_before = cpu_seconds(gateway_proc.pid)
        time.sleep(duration)
        cpu = cpu_seconds(gateway_proc.pid) - cpu_before
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            lines = out.strip().splitlines()
            if not lines or not lines[-1].startswith("{"):
                raise RuntimeError(f"client failed: {err[-2000:]}")
            results.append(json.loads(lines[-1]))
        upstream_proc.send_signal(signal.SIGTERM)
        assert upstream_proc.stdout is not None
        published = json.loads(upstream_proc.stdout.read().strip().splitlines()[-1])["published"]
    deliveries_per_s = sum(r["deliveries_per_s"] for r in results)
    return {
        "streams": streams,
        "rate": rate,
        "offered_per_s": rate * streams,
        "deliveries_per_s": deliveries_per_s,
        "messages_per_s": sum(r["messages"] for r in results) / duration,
        "resyncs": sum(r["resyncs"] for r in results),
        "skipped": sum(r["skipped"] for r in results),
        "sequence_errors": sum(r["sequence_errors"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),  # the worse client process
        "p99_ms": max(r["p99_ms"] for r in results),
        "gateway_cpu_per_s": cpu / duration,
        "cpu_us_per_delivery": cpu / duration / deliveries_per_s * 1e6 if deliveries_per_s else 0,
        "published": published,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--role", choices=["driver", "upstream", "client", "micro"], default="driver"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="upstream: snapshots per second")
    parser.add_argument("--target", default="")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--per-channel", type=int, default=100)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rates", default="10,200", help="driver: snapshot rates to run")
    parser.add_argument("--before", default="", help="default: parent of the shared-view commit")
    parser.add_argument("--after", default="HEAD")
    args = parser.parse_args()
    if args.role == "upstream":
        import uvloop

        uvloop.run(upstream_main(args.rate))
        return
    if args.role == "micro":
        asyncio.run(_in_loop(micro_main, args.streams))  # the keeper wants a running loop
        return
    if args.role == "client":
        import uvloop

        uvloop.run(client_main(args.target, args.streams, args.per_channel, args.duration))
        return

    introduced = _git(
        "log", "--diff-filter=A", "--format=%h", "--", "gateway/rpc/book_stream.py"
    ).splitlines()[-1]
    before = args.before or f"{introduced}^"
    trees = {
        "before": (_git("rev-parse", "--short", before), extract(before)),
        "after": (_git("rev-parse", "--short", args.after), extract(args.after)),
    }
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        work = {name: micro(tree, args.streams) for name, (_, tree) in trees.items()}
        for name, ms in work.items():
            print(f"{name}: one snapshot to {args.streams} consumers = {ms:.2f} ms CPU", flush=True)
        for rate in [float(r) for r in args.rates.split(",")]:
            for repeat in range(args.repeats):
                for name, (_, tree) in trees.items():
                    row = run(tree, args.streams, rate, args.duration)
                    rows.append((name, row))
                    print(f"{name} rate={rate:g} #{repeat + 1}: {json.dumps(row)}", flush=True)
    finally:
        for _, tree in trees.values():
            shutil.rmtree(tree, ignore_errors=True)
    print(
        f"\nmachine: {machine()}; upstream, gateway and client processes separate; "
        f"before = {trees['before'][0]} (per-consumer), after = {trees['after'][0]} (shared view)\n"
    )
    print(
        "in-process, median of 200 snapshots (compare + encode + offer, no gRPC): "
        + ", ".join(f"{name} {ms:.2f} ms" for name, ms in work.items())
        + f" per snapshot to {args.streams} consumers\n"
    )
    print(
        "| code | N | snapshots/s | offered deliveries/s | delivered/s | msgs/s | updates/msg | "
        "p50 ms | p99 ms | resyncs | seq errors | gateway CPU | CPU us/delivery |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        per_msg = r["deliveries_per_s"] / r["messages_per_s"] if r["messages_per_s"] else 0
        print(
            f"| {name} | {r['streams']} | {r['rate']:g} | {r['offered_per_s']:,.0f} | "
            f"{r['deliveries_per_s']:,.0f} | {r['messages_per_s']:,.0f} | {per_msg:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['resyncs']} | {r['sequence_errors']} | "
            f"{r['gateway_cpu_per_s']:.2f} | {r['cpu_us_per_delivery']:.1f} |"
        )


if __name__ == "__main__":
    main()
