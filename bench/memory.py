"""Benchmark 4: gateway memory per idle stream at N = 5,000, and RSS drift over a soak.

    .venv/bin/python -m bench.memory [--streams 5000] [--soak 600]

RSS is read from /proc/PID/status of the gateway process. Per-stream cost = (RSS with N idle
streams - RSS with none) / N; goal <= 30 KiB (PERF-NOTES baseline: ~26 KiB per idle stream on shared
connections). The soak then runs steady load (1,000 streams, 100 events/s per stream) and reports the
drift of RSS after a warm-up minute; goal < 5 %.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import time

from bench._util import PY, ROOT, cpu_seconds, machine, process


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def clients(
    target: str, streams: int, duration: float, per_process: int = 2500
) -> list[subprocess.Popen[str]]:
    procs = []
    remaining = streams
    while remaining > 0:
        n = min(per_process, remaining)
        remaining -= n
        procs.append(
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "bench.fanout_client",
                    "--target",
                    target,
                    "--streams",
                    str(n),
                    "--duration",
                    str(duration),
                    "--per-channel",
                    "500",
                ],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    return procs


def wait_ready(
    procs: list[subprocess.Popen[str]], upstream: subprocess.Popen[str] | None = None
) -> None:
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", line
    if upstream is not None:  # the synthetic upstream publishes only after SIGUSR1
        upstream.send_signal(signal.SIGUSR1)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--soak", type=float, default=600.0)
    args = parser.parse_args()
    env = {
        "ALP_GATEWAY_METRICS_ENABLED": "false",
        "ALP_GATEWAY_AUDIT_PATH": "",
        "ALP_GATEWAY_LOG_LEVEL": "ERROR",
        "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
        "ALP_GATEWAY_UPSTREAM_REST_URL": "http://127.0.0.1:9/api/v3",
    }
    print(f"machine: {machine()}")
    with (
        process(
            [PY, "-m", "bench.synthetic_upstream", "--rate", "0"], {"ws": r"(ws://[\d.:]+/ws)"}
        ) as (_, idle_upstream),
        process(
            [PY, "-m", "gateway", "serve", "--dev-mode", "--port", "0"],
            {"target": r"serving gRPC on ([\d.]+:\d+)"},
            {**env, "ALP_GATEWAY_UPSTREAM_WS_URL": idle_upstream["ws"]},
        ) as (gw_proc, gw),
    ):
        time.sleep(1)
        before = rss_kib(gw_proc.pid)
        procs = clients(gw["target"], args.streams, duration=3)
        wait_ready(procs)
        time.sleep(2)
        after = rss_kib(gw_proc.pid)
        for proc in procs:
            proc.wait(timeout=120)
    per_stream = (after - before) / args.streams
    print(
        f"idle streams: RSS {before} KiB -> {after} KiB with {args.streams} streams = "
        f"{per_stream:.1f} KiB per stream (goal <= 30)",
        flush=True,
    )
    if args.soak <= 0:
        return
    with (
        process(
            [PY, "-m", "bench.synthetic_upstream", "--rate", "100"], {"ws": r"(ws://[\d.:]+/ws)"}
        ) as (upstream_proc, upstream),
        process(
            [PY, "-m", "gateway", "serve", "--dev-mode", "--port", "0"],
            {"target": r"serving gRPC on ([\d.]+:\d+)"},
            {**env, "ALP_GATEWAY_UPSTREAM_WS_URL": upstream["ws"]},
        ) as (gw_proc, gw),
    ):
        procs = clients(gw["target"], 1000, duration=args.soak, per_process=500)
        wait_ready(procs, upstream_proc)
        samples: list[tuple[float, int]] = []
        cpu_began = cpu_seconds(gw_proc.pid)
        began = time.monotonic()
        while time.monotonic() - began < args.soak:
            samples.append((time.monotonic() - began, rss_kib(gw_proc.pid)))
            time.sleep(10)
        gateway_cpu = cpu_seconds(gw_proc.pid) - cpu_began
        outputs = [proc.communicate(timeout=args.soak + 120)[0] for proc in procs]
        results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    delivered = sum(r["events_per_s"] for r in results)
    print(
        f"load: {delivered:,.0f} events/s delivered to 1,000 streams (offered 100,000), "
        f"p50 {max(r['p50_ms'] for r in results):.1f} ms, p99 {max(r['p99_ms'] for r in results):.1f}"
        f" ms; gateway CPU {gateway_cpu:.0f} s in {args.soak:.0f} s",
        flush=True,
    )
    warm = [rss for t, rss in samples if t >= 60] or [samples[-1][1]]
    drift = (warm[-1] - warm[0]) / warm[0] * 100
    print(
        f"soak {args.soak:.0f} s, 1,000 streams x 100 events/s: RSS after warm-up {warm[0]} KiB -> "
        f"{warm[-1]} KiB (drift {drift:+.2f} %, goal < 5 %); max {max(warm)} KiB",
        flush=True,
    )
    print("samples (s, KiB): " + ", ".join(f"{t:.0f}:{rss}" for t, rss in samples))


if __name__ == "__main__":
    main()
