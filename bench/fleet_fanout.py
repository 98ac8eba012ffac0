"""Benchmark: fan-out of one upstream topic to N streams through a fleet of W workers (issue 14).

    .venv/bin/python -m bench.fleet_fanout [--workers 1,2,4] [--streams 100,1000] [--duration 4]

Configurations, each run with fresh processes (all on 127.0.0.1, killed on exit, Ctrl-C included):
- "no fleet": `alp-gateway serve` without Redis (one process, the baseline),
- "W worker(s)": `alp-gateway serve --workers W` with `cluster.redis_url` on its own redis-server
  (W = 1 too, so the fleet's coordination cost is inside the comparison).
For every N the synthetic ALP upstream (bench/synthetic_upstream.py, own process) publishes trades on
`trade.BTC_USDT`; load-generator processes (`--role client` of this module) open N StreamTrades
calls over N / --per-channel TCP connections (one per channel), which the kernel spreads over the
workers' shared port (SO_REUSEPORT). Two runs per (configuration, N), interleaved so that the
configurations of one N are measured close together on a noisy machine:
- throughput: the upstream offers min(--max-offered, --max-topic-rate x N) deliveries/s (rate per
  topic = offered / N; defaults: 2 M/s at N = 100, 4 M/s at N = 1,000),
- latency: 25,000 deliveries/s offered to the N streams; p50/p99 of frame send -> receipt of the
  oldest event of each received message, over every message of every client.
CPU seconds of every process (gateway workers, supervisor, load generators, upstream, Redis) over
the measurement window come from /proc/<pid>/stat. The upstream reports how many sockets subscribed
to the topic at once (one per member until the fleet shares upstream subscriptions, then one).
Prints markdown tables with same-run ratios to "1 worker" and "no fleet"; writes PNG plots into
bench/results/ when matplotlib is importable (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._util import (
    PY,
    ROOT,
    answers_ping,
    child_pids,
    cpu_seconds,
    free_port,
    machine,
    percentile,
)

RESULTS = ROOT / "bench" / "results"
PREFIX = "fleet_fanout"  # --out-prefix: names of the files written into RESULTS
LATENCY_OFFERED = 25_000.0
HEADLINE_N = 1000
PAIR = "BTC_USDT"

# -- children: every process this benchmark starts, killed on any exit ----------------------------
CHILDREN: list[subprocess.Popen[str]] = []


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when this benchmark dies, even by SIGKILL."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Child:
    """A child process in its own process group; a thread collects its output lines."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str] | None = None,
        stdin: bool = False,
        cwd: Path = ROOT,
    ) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(os.environ, **(env or {})),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        CHILDREN.append(self.proc)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.rstrip()[:300])
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, predicate: Any, timeout: float, what: str) -> str:
        """The next output line for which predicate(line) holds, within timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                detail = "\n".join(self.tail)
                raise RuntimeError(f"{what}: not seen in {timeout:.0f} s; output:\n{detail}")
            if line and predicate(line):
                return line

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def stop(self, grace: float = 10.0) -> None:
        stop(self.proc, grace)


def stop(proc: subprocess.Popen[str], grace: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL after `grace` seconds, then to stragglers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError):  # workers left behind by their supervisor
        os.killpg(proc.pid, signal.SIGKILL)


def stop_all() -> None:
    for proc in reversed(CHILDREN):
        stop(proc, grace=3.0)
    CHILDREN.clear()


# -- the pieces of one run -------------------------------------------------------------------------


def start_redis(workdir: str) -> tuple[Child, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed: `bash scripts/polyglot_deps.sh` installs it")
    port = free_port()
    options = {"port": str(port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
    options["dir"] = workdir
    child = Child([binary, *(part for k, v in options.items() for part in (f"--{k}", v))])
    deadline = time.monotonic() + 10
    while not answers_ping(port):
        if child.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not answer PING:\n" + "\n".join(child.tail))
        time.sleep(0.02)
    return child, f"redis://127.0.0.1:{port}/0"


GATEWAY_TREE = ROOT  # --gateway-rev: a `git archive` of that revision instead of the checkout


def extract(rev: str, into: Path) -> tuple[Path, str]:
    """`rev` as a plain tree under `into` (git archive: nothing in the shared checkout moves)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into, sha


def start_gateway(
    workers: int | None, redis_url: str | None, upstream_ws: str
) -> tuple[Child, int]:
    """`alp-gateway serve` (workers None: without Redis), waits for every worker's serving line."""
    port = free_port()
    env = {
        "ALP_GATEWAY_UPSTREAM_WS_URL": upstream_ws,
        "ALP_GATEWAY_UPSTREAM_REST_URL": "http://127.0.0.1:9/api/v3",
        "ALP_GATEWAY_METRICS_ENABLED": "false",
        "ALP_GATEWAY_HEALTH_HTTP_PORT": "0",
        "ALP_GATEWAY_AUDIT_PATH": "",
        "ALP_GATEWAY_LOG_LEVEL": "ERROR",
        "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
        "ALP_GATEWAY_STREAM_QUEUE_LIMIT": "1000000",
        "ALP_GATEWAY_DRAIN_GRACE_S": "1",
    }
    command = [PY, "-m", "gateway", "serve", "--dev-mode", "--port", str(port)]
    if redis_url:
        env["ALP_GATEWAY_CLUSTER_REDIS_URL"] = redis_url
    if workers is not None:
        command += ["--workers", str(workers)]
    child = Child(command, env, cwd=GATEWAY_TREE)
    serving = 0  # workers share stdout: two lines can arrive run together
    while serving < (workers or 1):
        line = child.expect(lambda s: "serving gRPC on" in s, 60, f"gateway worker {serving + 1}")
        serving += line.count("serving gRPC on")
    return child, port


def gateway_pids(gateway: Child, workers: int | None) -> tuple[list[int], list[int]]:
    """(worker pids, supervisor pids): `serve --workers 1` and no fleet are one process."""
    if not workers or workers == 1:
        return [gateway.proc.pid], []
    children = child_pids(gateway.proc.pid)
    return children, [gateway.proc.pid]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat minus idle, iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def connections_per_pid(pids: list[int], port: int) -> list[int]:
    """Established TCP connections on `port` held by each pid (/proc/net/tcp + the pid's fds)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    counts = []
    for pid in pids:
        count = 0
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    count += os.readlink(fd) in inodes
        counts.append(count)
    return counts


def clients_for(streams: int) -> int:
    return 1 if streams <= 100 else 2  # as bench.fanout


def run(
    config: str, workers: int | None, streams: int, offered: float, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement with fresh processes; every process is stopped before it returns."""
    rate = offered / streams
    started: list[Child] = []
    try:
        with tempfile.TemporaryDirectory(prefix="alp-fleet-fanout-") as workdir:
            redis = redis_url = None
            if workers is not None:
                redis, redis_url = start_redis(workdir)
                started.append(redis)
            upstream = Child([PY, "-m", "bench.synthetic_upstream", "--rate", str(rate)])
            started.append(upstream)
            line = upstream.expect(lambda s: "synthetic upstream ws://" in s, 30, "upstream")
            upstream_ws = line.split()[-1]
            gateway, port = start_gateway(workers, redis_url, upstream_ws)
            started.append(gateway)
            count = clients_for(streams) if args.clients == 0 else args.clients
            clients = []
            for i in range(count):
                share = streams // count + (1 if i < streams % count else 0)
                client = Child(
                    [
                        *(PY, "-m", "bench.fleet_fanout", "--role", "client"),
                        *("--target", f"127.0.0.1:{port}", "--client-streams", str(share)),
                        *("--per-channel", str(args.per_channel)),
                        *("--duration", str(args.duration), "--settle", str(args.settle)),
                    ],
                    stdin=True,
                )
                clients.append(client)
                started.append(client)
            for client in clients:  # every stream subscribed before the upstream publishes
                client.expect(lambda s: s.strip() == "ready", 120, "client ready")
            worker_pids, supervisor_pids = gateway_pids(gateway, workers)
            upstream.signal(signal.SIGUSR1)
            for client in clients:
                client.send("go\n")
            time.sleep(args.settle)
            roles: dict[str, list[int]] = {
                "workers": worker_pids,
                "supervisor": supervisor_pids,
                "loaders": [c.proc.pid for c in clients],
                "upstream": [upstream.proc.pid],
                "redis": [redis.proc.pid] if redis else [],
            }
            before = {role: [cpu_seconds(p) for p in pids] for role, pids in roles.items()}
            busy_before, window_began = machine_busy_seconds(), time.monotonic()
            time.sleep(args.duration / 2)
            conns = connections_per_pid(worker_pids, port)
            time.sleep(args.duration / 2)
            after = {role: [cpu_seconds(p) for p in pids] for role, pids in roles.items()}
            busy = machine_busy_seconds() - busy_before
            window = time.monotonic() - window_began
            results = []
            for client in clients:
                line = client.expect(lambda s: s.startswith("{"), args.duration + 60, "client")
                results.append(json.loads(line))
            for client in clients:
                client.stop(5)
            gateway.stop(15)
            upstream.signal(signal.SIGTERM)
            stats = json.loads(upstream.expect(lambda s: s.startswith("{"), 20, "upstream stats"))
    finally:
        for child in reversed(started):
            child.stop(5)
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    cpu = {role: [a - b for a, b in zip(after[role], before[role], strict=True)] for role in roles}
    delivered = sum(r["events_per_s"] for r in results)
    messages = sum(r["messages"] for r in results) / args.duration
    return {
        "config": config,
        "workers": workers,
        "streams": streams,
        "offered_per_s": offered,
        "rate_per_topic": rate,
        "delivered_per_s": delivered,
        "messages_per_s": messages,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "min_stream_per_s": min(r["min_stream_per_s"] for r in results),
        "max_stream_per_s": max(r["max_stream_per_s"] for r in results),
        "connections_per_worker": conns,
        "streams_per_worker": [c * args.per_channel for c in conns],
        "upstream_subscribers": stats["peak_subscribers"].get(f"trade.{PAIR}", 0),
        "upstream_subscribe_commands": stats["subscribe_commands"].get(f"trade.{PAIR}", 0),
        "upstream_connections": stats["connections_total"],
        "upstream_frames_per_s": stats["frames_sent"] / max(1e-9, stats["published_s"]),
        "cpu_s": {role: [round(x, 2) for x in values] for role, values in cpu.items()},
        "others_cpu_s": max(0.0, busy - sum(sum(v) for v in cpu.values())),
        "loadavg_1m": os.getloadavg()[0],
        "window_s": round(window, 3),
    }


# -- the load generator (own process) ---------------------------------------------------------------
async def client_main(
    target: str, streams: int, per_channel: int, duration: float, settle: float
) -> None:
    import grpc
    from alp.v3 import stream_pb2, stream_pb2_grpc

    # a channel of its own per --per-channel streams: its own TCP connection (no shared subchannel
    # pool), so the kernel spreads the connections over the workers' shared port
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(target, options=options)
        for _ in range(max(1, -(-streams // per_channel)))
    ]
    request = stream_pb2.StreamTradesRequest(pairs=[PAIR])
    counting = False
    messages = 0
    per_stream = [0] * streams
    latencies: list[float] = []
    subscribed = 0
    all_subscribed = asyncio.Event()

    async def consume(index: int) -> None:
        nonlocal messages, subscribed
        stub = stream_pb2_grpc.StreamServiceStub(channels[index // per_channel])
        async for message in stub.StreamTrades(request):
            if message.HasField("status"):
                subscribed += 1
                if subscribed == streams:
                    all_subscribed.set()
                continue
            if counting:
                now = time.time()
                per_stream[index] += len(message.trades)
                messages += 1
                oldest = message.trades[0].time  # the oldest event of the batch: worst case
                latencies.append(now - (oldest.seconds + oldest.nanos / 1e9))

    tasks = [asyncio.create_task(consume(i)) for i in range(streams)]
    await asyncio.wait_for(all_subscribed.wait(), 120)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    await asyncio.sleep(settle)
    counting = True
    began = time.perf_counter()
    await asyncio.sleep(duration)
    counting = False
    elapsed = time.perf_counter() - began
    if len(latencies) > 200_000:  # keep the report small: an even subsample
        step = len(latencies) / 200_000
        latencies = [latencies[int(i * step)] for i in range(200_000)]
    result = {
        "streams": streams,
        "events": sum(per_stream),
        "messages": messages,
        "events_per_s": sum(per_stream) / elapsed,
        "min_stream_per_s": min(per_stream) / elapsed,
        "max_stream_per_s": max(per_stream) / elapsed,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
    }
    print(json.dumps(result), flush=True)
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close(grace=None)


# -- report -----------------------------------------------------------------------------------------
def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "-"


def _cpu(row: dict[str, Any], role: str) -> float:
    return float(sum(row["cpu_s"][role]))


def table(rows: list[dict[str, Any]], kind: str) -> list[str]:
    def base(config: str, streams: int, key: str) -> float | None:
        for r in rows:
            if r["kind"] == kind and r["config"] == config and r["streams"] == streams:
                return float(r[key])
        return None

    spread = "delivered" if kind == "throughput" else "p99"
    out = [
        f"| configuration | N | offered ev/s | delivered ev/s | x 1 worker | x no fleet | p50 ms | "
        f"p99 ms | p99 x 1 worker | p99 x no fleet | {spread} over repeats | per-stream ev/s | "
        f"streams per worker | upstream subs | upstream frames/s |",
        "|---" * 15 + "|",
    ]
    for r in rows:
        if r["kind"] != kind:
            continue
        n = r["streams"]
        if kind == "throughput":
            lo, hi = min(r["repeats_delivered"]), max(r["repeats_delivered"])
            over = f"{lo / 1e6:.2f}-{hi / 1e6:.2f} M"
        else:
            over = f"{min(r['repeats_p99']):.0f}-{max(r['repeats_p99']):.0f} ms"
        out.append(
            f"| {r['config']} | {n:,} | {r['offered_per_s']:,.0f} | {r['delivered_per_s']:,.0f} | "
            f"{_ratio(r['delivered_per_s'], base('1 worker', n, 'delivered_per_s'))} | "
            f"{_ratio(r['delivered_per_s'], base('no fleet', n, 'delivered_per_s'))} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{_ratio(r['p99_ms'], base('1 worker', n, 'p99_ms'))} | "
            f"{_ratio(r['p99_ms'], base('no fleet', n, 'p99_ms'))} | {over} | "
            f"{r['min_stream_per_s']:,.0f}-{r['max_stream_per_s']:,.0f} | "
            f"{'/'.join(str(s) for s in r['streams_per_worker'])} | "
            f"{r['upstream_subscribers']} | {r['upstream_frames_per_s']:,.0f} |"
        )
    return out


def cpu_table(rows: list[dict[str, Any]], window: float) -> list[str]:
    out = [
        "| run | configuration | N | gateway CPU s (per worker) | gateway us/delivery | "
        "loaders CPU s | upstream CPU s | Redis CPU s | other processes CPU s | "
        "machine busy |",
        "|---" * 10 + "|",
    ]
    cores = os.cpu_count() or 1
    for r in rows:
        workers_cpu = "+".join(f"{x:.1f}" for x in r["cpu_s"]["workers"])
        gateway = _cpu(r, "workers") + _cpu(r, "supervisor")
        ours = sum(_cpu(r, role) for role in r["cpu_s"])
        busy = (ours + r["others_cpu_s"]) / (r["window_s"] * cores)
        per_delivery = gateway / max(1.0, r["delivered_per_s"] * window) * 1e6
        out.append(
            f"| {r['kind']} | {r['config']} | {r['streams']:,} | {gateway:.1f} ({workers_cpu}) | "
            f"{per_delivery:.2f} | {_cpu(r, 'loaders'):.1f} | {_cpu(r, 'upstream'):.1f} | "
            f"{_cpu(r, 'redis'):.2f} | {r['others_cpu_s']:.1f} | {busy:.0%} |"
        )
    return out


def plot(rows: list[dict[str, Any]], configs: list[tuple[str, int | None]]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    RESULTS.mkdir(parents=True, exist_ok=True)
    written = []

    def bars(selected: list[dict[str, Any]], key: str) -> list[list[float]]:
        """Error bars: the lowest and highest value over the repeats of each row."""
        repeats = "repeats_delivered" if key == "delivered_per_s" else "repeats_p99"
        low = [r[key] - min(r[repeats]) for r in selected]
        high = [max(r[repeats]) - r[key] for r in selected]
        return [low, high]

    def series(kind: str, config: str, key: str) -> tuple[list[int], list[float], list[Any]]:
        selected = sorted(
            (r for r in rows if r["kind"] == kind and r["config"] == config),
            key=lambda r: int(r["streams"]),
        )
        return [r["streams"] for r in selected], [r[key] for r in selected], bars(selected, key)

    for kind, key, ylabel, name in (
        ("throughput", "delivered_per_s", "delivered events/s", f"{PREFIX}_delivered_vs_n.png"),
        ("latency", "p99_ms", "p99 ms at 25k events/s offered", f"{PREFIX}_p99_vs_n.png"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for config, _ in configs:
            xs, ys, yerr = series(kind, config, key)
            if xs:
                ax.errorbar(
                    xs,
                    ys,
                    yerr=yerr,
                    capsize=3,
                    marker="o",
                    label=config,
                    linestyle="--" if config == "no fleet" else "-",
                )
        ax.set_xscale("log")
        ax.set_xlabel("consumer streams N")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(RESULTS / name, dpi=80)
        plt.close(fig)
        written.append(RESULTS / name)

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.3))
    for ax, kind, key, ylabel in (
        (left, "throughput", "delivered_per_s", f"delivered events/s, N = {HEADLINE_N:,}"),
        (right, "latency", "p99_ms", f"p99 ms at 25k ev/s, N = {HEADLINE_N:,}"),
    ):
        points = sorted(
            (
                r
                for r in rows
                if r["kind"] == kind and r["streams"] == HEADLINE_N and r["workers"] is not None
            ),
            key=lambda r: int(r["workers"]),
        )
        if points:
            xs = [r["workers"] for r in points]
            ax.errorbar(
                xs,
                [r[key] for r in points],
                yerr=bars(points, key),
                capsize=3,
                marker="o",
                label="W workers + Redis",
            )
            ax.set_xticks(xs)
        baseline = [
            r[key]
            for r in rows
            if r["kind"] == kind and r["streams"] == HEADLINE_N and r["workers"] is None
        ]
        if baseline:
            ax.axhline(baseline[0], linestyle="--", color="grey", label="no fleet")
        ax.set_xlabel("workers W")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{PREFIX}_vs_workers.png", dpi=80)
    plt.close(fig)
    written.append(RESULTS / f"{PREFIX}_vs_workers.png")
    return written


# -- main -------------------------------------------------------------------------------------------
def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (kind, N, configuration): its median run (by delivered events/s for
    throughput, by p99 for latency), with every repeat's value of that figure."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["kind"], r["streams"], r["config"]), []).append(r)
    rows = []
    for (kind, _, _), group in groups.items():
        key = "delivered_per_s" if kind == "throughput" else "p99_ms"
        ordered = sorted(group, key=lambda r: float(r[key]))
        row = dict(ordered[(len(ordered) - 1) // 2])
        row["repeats_delivered"] = [r["delivered_per_s"] for r in group]
        row["repeats_p99"] = [r["p99_ms"] for r in group]
        rows.append(row)
    return rows


def measure(args: argparse.Namespace) -> None:
    counts = [int(x) for x in args.workers.split(",")]
    ns = [int(x) for x in args.streams.split(",")]
    configs: list[tuple[str, int | None]] = [("no fleet", None)]
    configs += [(f"{w} worker{'s' if w > 1 else ''}", w) for w in counts]
    plan = [
        (kind, offered, n, config, workers)
        for _ in range(args.repeats)
        for n in ns
        for kind, offered in (
            ("throughput", min(args.max_offered, args.max_topic_rate * n)),
            ("latency", LATENCY_OFFERED),
        )
        for config, workers in configs
    ]
    print(
        f"machine: {machine()}; {len(plan)} runs, {args.duration:.0f} s window each, "
        f"budget {args.budget:.0f} s",
        flush=True,
    )
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    run_times: list[float] = []
    for kind, offered, n, config, workers in plan:
        elapsed = time.monotonic() - began
        expected = max(run_times) if run_times else 0.0
        if elapsed + expected > args.budget:
            print(f"budget: {elapsed:.0f} s used, skipping {kind} N={n} {config}", flush=True)
            continue
        started = time.monotonic()
        try:
            row = run(config, workers, n, offered, args)
        except RuntimeError as exc:
            print(f"FAILED {kind} N={n} {config}: {exc}", flush=True)
            continue
        row["kind"] = kind
        runs.append(row)
        run_times.append(time.monotonic() - started)
        print(
            f"{kind:10} N={n:<5} {config:10} delivered {row['delivered_per_s']:>10,.0f}/s "
            f"p50 {row['p50_ms']:7.1f} p99 {row['p99_ms']:7.1f} ms "
            f"streams/worker {row['streams_per_worker']} upstream subs "
            f"{row['upstream_subscribers']} cpu {row['cpu_s']} ({run_times[-1]:.0f} s)",
            flush=True,
        )
    rows = aggregate(runs)
    print(
        f"\nmachine: {machine()}; {args.repeats} repeat(s) of {args.duration:.0f} s per row "
        f"(the median run is shown); total {time.monotonic() - began:.0f} s; load average "
        f"{min(r['loadavg_1m'] for r in runs):.1f}-{max(r['loadavg_1m'] for r in runs):.1f}"
    )
    for kind, title in (
        (
            "throughput",
            f"throughput: the upstream offers min({args.max_offered:,.0f}, "
            f"{args.max_topic_rate:,.0f} x N) deliveries/s",
        ),
        ("latency", f"latency: {LATENCY_OFFERED:,.0f} deliveries/s offered"),
    ):
        print(f"\n{title}\n")
        print("\n".join(table(rows, kind)))
    print(f"\nCPU seconds in the {args.duration:.0f} s window of the runs above\n")
    print("\n".join(cpu_table(rows, args.duration)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = RESULTS / f"{PREFIX}.json"
    summary.write_text(
        json.dumps({"machine": machine(), "args": vars(args), "runs": runs}, indent=1)
    )
    print(f"\nwrote {summary.relative_to(ROOT)}")
    for path in plot(rows, configs):
        print(f"wrote {path.relative_to(ROOT)}")
    headline = [r for r in rows if r["kind"] == "throughput" and r["streams"] == HEADLINE_N]
    if headline:
        best = max(headline, key=lambda r: r["delivered_per_s"])
        print(
            f"N={HEADLINE_N}: most delivered by {best['config']} ({best['delivered_per_s']:,.0f}/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts W")
    parser.add_argument("--streams", default="100,1000", help="comma-separated stream counts N")
    parser.add_argument("--duration", type=float, default=4.0, help="measurement window, s")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before the window")
    parser.add_argument(
        "--max-offered", type=float, default=4_000_000, help="deliveries/s offered (throughput)"
    )
    parser.add_argument(
        "--max-topic-rate",
        type=float,
        default=20_000,
        help="at most this many frames/s per upstream subscription (throughput)",
    )
    parser.add_argument("--out-prefix", default="fleet_fanout", help="file names in bench/results/")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row (median shown)")
    parser.add_argument("--per-channel", type=int, default=10, help="streams per TCP connection")
    parser.add_argument("--clients", type=int, default=0, help="load generators (0: 1 or 2 by N)")
    parser.add_argument("--budget", type=float, default=540.0, help="skip runs past this, s")
    parser.add_argument(
        "--gateway-rev",
        help="run the gateway from this git revision (a git archive in /tmp), not the checkout",
    )
    parser.add_argument("--role", choices=["bench", "client"], default="bench")
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--client-streams", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "client":
        import uvloop

        uvloop.run(
            client_main(
                args.target, args.client_streams, args.per_channel, args.duration, args.settle
            )
        )
        return

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    global GATEWAY_TREE, PREFIX
    PREFIX = args.out_prefix
    try:
        with tempfile.TemporaryDirectory(prefix="alp-fleet-fanout-tree-") as tree:
            if args.gateway_rev:
                GATEWAY_TREE, sha = extract(args.gateway_rev, Path(tree))
                print(f"gateway: revision {sha} (git archive in {tree})", flush=True)
            else:
                print(f"gateway: the checkout {ROOT} as it is", flush=True)
            measure(args)
    except KeyboardInterrupt:
        print("interrupted: stopping every process this benchmark started", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        stop_all()


if __name__ == "__main__":
    main()
