"""Benchmark: unary throughput of one gateway process vs a fleet of workers (issue "One gateway,
many processes"), in the same run.

    .venv/bin/python -m bench.fleet [--workers 1,2] [--duration 5] [--loaders 4] [--concurrency 16]

Every configuration gets its own Redis, sandbox and gateway processes, all on 127.0.0.1:
- "1 process": `alp-gateway serve` without Redis (today's default),
- "1 worker + Redis": the same with `cluster.redis_url` (the fleet's coordination cost),
- "N workers": `alp-gateway serve --workers N` with Redis.
`--loaders` load-generator processes (bench/load.py, each its own TCP connection, so the kernel
spreads them over the workers) call ListPairs and the micro-cached ListTickers, `--concurrency`
calls in flight each; the table gives the summed calls/s and the median p50/p99, and the ratio to
"1 process". On a 2-core machine the loaders compete with the workers for the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
from statistics import median

from bench._util import PY, ROOT, free_port, machine, process, redis_server

METHODS = {
    "ListPairs": "/alp.v3.MarketDataService/ListPairs",
    "ListTickers (cached)": "/alp.v3.MarketDataService/ListTickers",
}


def wait_port(port: int) -> None:
    for _ in range(600):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def measure(
    workers: int, redis: str | None, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    with process(
        [PY, "-m", "gateway", "sandbox", "--port", "0", "--no-market"],
        {"rest": r"ALP sandbox REST: (\S+)", "ws": r"ALP sandbox WS: +(\S+)"},
    ) as (_, sandbox):
        port = free_port()
        env = {
            **os.environ,
            "ALP_GATEWAY_UPSTREAM_REST_URL": sandbox["rest"],
            "ALP_GATEWAY_UPSTREAM_WS_URL": sandbox["ws"],
            "ALP_GATEWAY_METRICS_ENABLED": "false",
            "ALP_GATEWAY_AUDIT_PATH": "",
            "ALP_GATEWAY_LOG_LEVEL": "ERROR",
            "ALP_GATEWAY_HEALTH_HTTP_PORT": "0",
            "ALP_GATEWAY_UPSTREAM_PUBLIC_RPS": "0",
            "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
        }
        if redis:
            env["ALP_GATEWAY_CLUSTER_REDIS_URL"] = redis
        command = [PY, "-m", "gateway", "serve", "--dev-mode", "--port", str(port)]
        if workers > 1:
            command += ["--workers", str(workers)]
        gateway = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_port(port)
            time.sleep(1.0 + workers)  # every worker up and past its first health check
            results: dict[str, dict[str, float]] = {}
            for name, method in METHODS.items():
                loaders = [
                    subprocess.Popen(
                        [
                            PY,
                            "-m",
                            "bench.load",
                            "--grpc",
                            f"127.0.0.1:{port}",
                            "--method",
                            method,
                            "--concurrency",
                            str(args.concurrency),
                            "--duration",
                            str(args.duration),
                        ],
                        cwd=ROOT,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for _ in range(args.loaders)
                ]
                rows = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in loaders]
                results[name] = {
                    "rps": sum(r["rps"] for r in rows),
                    "p50_ms": median(r["p50_ms"] for r in rows),
                    "p99_ms": median(r["p99_ms"] for r in rows),
                    "errors": sum(r["errors"] for r in rows),
                }
            return results
        finally:
            os.killpg(gateway.pid, 15)
            gateway.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--loaders", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    print(f"machine: {machine()}; {args.loaders} loaders x c={args.concurrency}, {args.duration}s")
    table: dict[str, dict[str, dict[str, float]]] = {}
    table["1 process"] = measure(1, None, args)
    with redis_server() as url:
        table["1 worker + Redis"] = measure(1, url, args)
        for n in counts:
            if n > 1:
                table[f"{n} workers"] = measure(n, url, args)
    print("\n| configuration | call | calls/s | x 1 process | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for config, results in table.items():
        for name, row in results.items():
            base = table["1 process"][name]["rps"]
            print(
                f"| {config} | {name} | {row['rps']:.0f} | {row['rps'] / base:.2f} | "
                f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']:.0f} |"
            )


if __name__ == "__main__":
    main()
