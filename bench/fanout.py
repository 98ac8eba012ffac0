"""Benchmark 3 (+5): fan-out of one upstream topic to N server streams, and upstream economy.

    .venv/bin/python -m bench.fanout [--duration 5] [--quick]

A synthetic ALP WebSocket upstream (own process) publishes trades on `trade.BTC_USDT`; the gateway
(own process) streams them to N subscribers held by client processes. Throughput runs offer more
than the machine can deliver; the latency run offers 25k deliveries/s (25 events/s x 1,000 streams).
Baseline from PERF-NOTES (same machine kind): one gRPC message per event saturates at ~45k
messages/s across 1,000 streams, p99 ~55 ms at 25k events/s to 1,000 streams.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time

import grpc
from alp.v3 import gateway_service_pb2, gateway_service_pb2_grpc

from bench._util import PY, ROOT, machine, process

BASELINE_MESSAGES_PER_S = 45_000  # PERF-NOTES: one message per event, 1,000 streams


def run(streams: int, rate: float, duration: float) -> dict[str, object]:
    clients = 1 if streams <= 100 else 2
    with (
        process(
            [PY, "-m", "bench.synthetic_upstream", "--rate", str(rate)],
            {"ws": r"synthetic upstream (ws://[\d.:]+/ws)"},
        ) as (upstream_proc, upstream),
        process(
            [PY, "-m", "gateway", "serve", "--dev-mode", "--port", "0"],
            {"target": r"serving gRPC on ([\d.]+:\d+)"},
            {
                "ALP_GATEWAY_UPSTREAM_WS_URL": upstream["ws"],
                "ALP_GATEWAY_UPSTREAM_REST_URL": "http://127.0.0.1:9/api/v3",
                "ALP_GATEWAY_METRICS_ENABLED": "false",
                "ALP_GATEWAY_AUDIT_PATH": "",
                "ALP_GATEWAY_LOG_LEVEL": "ERROR",
                "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
                "ALP_GATEWAY_STREAM_QUEUE_LIMIT": "1000000",
            },
        ) as (_, gw),
    ):
        procs = [
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "bench.fanout_client",
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
        for proc in procs:  # every stream subscribed before the upstream starts publishing
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready"
        upstream_proc.send_signal(signal.SIGUSR1)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)  # stdin already written
            lines = out.strip().splitlines()
            if not lines or not lines[-1].startswith("{"):
                raise RuntimeError(f"client failed: {err[-2000:]}")
            results.append(json.loads(lines[-1]))
        with grpc.insecure_channel(gw["target"]) as channel:
            status = gateway_service_pb2_grpc.GatewayServiceStub(channel).GetStatus(
                gateway_service_pb2.GetStatusRequest()
            )
        upstream_proc.send_signal(15)
        assert upstream_proc.stdout is not None
        upstream_stats = json.loads(upstream_proc.stdout.read().strip().splitlines()[-1])
    return {
        "streams": streams,
        "rate_per_topic": rate,
        "offered_per_s": rate * streams,
        "delivered_per_s": sum(r["events_per_s"] for r in results),
        "messages_per_s": sum(r["messages"] for r in results) / duration,
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "upstream_connections": len(status.connections),
        "upstream_topics": sum(len(c.topics) for c in status.connections),
        "upstream_subscribe_commands": sum(upstream_stats["subscribe_commands"].values()),
        "upstream_connections_opened": upstream_stats["connections_total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="N = 1, 100, 1000 only")
    args = parser.parse_args()
    plans = [(1, 20000.0), (100, 20000.0), (1000, 2000.0), (5000, 200.0)]
    if args.quick:
        plans = plans[:3]
    rows = []
    for streams, rate in plans:
        started = time.monotonic()
        row = run(streams, rate, args.duration)
        rows.append(("throughput", row))
        print(f"throughput N={streams}: {row} ({time.monotonic() - started:.0f} s)", flush=True)
    row = run(1000, 25.0, args.duration)
    rows.append(("latency @25k/s", row))
    print(f"latency N=1000 @25 ev/s/stream: {row}", flush=True)
    print(f"\nmachine: {machine()}; clients, gateway and upstream in separate processes\n")
    print(
        "| run | N | offered ev/s | delivered ev/s | gRPC msgs/s | events/msg | p50 ms | p99 ms | "
        "upstream subs | upstream conns |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        per_msg = r["delivered_per_s"] / r["messages_per_s"] if r["messages_per_s"] else 0  # type: ignore[operator]
        print(
            f"| {name} | {r['streams']} | {r['offered_per_s']:,.0f} | {r['delivered_per_s']:,.0f} | "
            f"{r['messages_per_s']:,.0f} | {per_msg:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['upstream_subscribe_commands']} | {r['upstream_connections_opened']} |"
        )
    at_1000 = next(r for n, r in rows if n == "throughput" and r["streams"] == 1000)
    print(
        f"\nN=1000 delivered {at_1000['delivered_per_s']:,.0f} events/s = "
        f"{at_1000['delivered_per_s'] / BASELINE_MESSAGES_PER_S:.1f}x the one-message-per-event "
        f"ceiling of {BASELINE_MESSAGES_PER_S:,} msgs/s (goal >= 500,000 events/s)"
    )


if __name__ == "__main__":
    main()
