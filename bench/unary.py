"""Benchmark 1: unary overhead of the gateway vs its two unavoidable hops, same run.

    .venv/bin/python -m bench.unary [--duration 3] [--repeats 3]

Baselines measured in the same run: (a) a bare grpc.aio echo server, (b) a direct aiohttp GET to
the sandbox. Gateway calls: ListPairs (public), ListBalances (private, signed token), ListTickers
with the public micro-cache on. All servers and the load generator run in separate processes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import urllib.request

from alp.v3 import market_data_pb2

from bench._util import PY, ROOT, gateway, machine, process, sandbox, spread

LIST_PAIRS = "/alp.v3.MarketDataService/ListPairs"
LIST_BALANCES = "/alp.v3.AccountService/ListBalances"
LIST_TICKERS = "/alp.v3.MarketDataService/ListTickers"


def load(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [PY, "-m", "bench.load", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    d = str(args.duration)
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    ticker_request = market_data_pb2.ListTickersRequest(pair="BTC_USDT").SerializeToString().hex()
    echo_cmd = [PY, "-m", "bench.echo_server"]
    with (
        process(echo_cmd, {"target": r"echo serving on ([\d.]+:\d+)"}) as (_, echo),
        sandbox() as (
            _,
            upstream,
        ),
        gateway(upstream) as (_, gw),
        gateway(upstream, {"ALP_GATEWAY_UPSTREAM_PUBLIC_CACHE_TTL_S": "0.25"}) as (_, gw_cached),
    ):
        echo_target, gw_target, sandbox_url = echo["target"], gw["target"], upstream["rest"]
        token = _token(sandbox_url)
        for repeat in range(args.repeats):
            for c in levels:
                runs = {
                    "echo": (
                        "--grpc",
                        echo_target,
                        "--method",
                        "/bench.Echo/Echo",
                        "--payload",
                        "00" * 64,
                    ),
                    "direct GET /pairs": ("--http", f"{sandbox_url}/pairs"),
                    "direct GET /accounts/balances": (
                        "--http",
                        f"{sandbox_url}/accounts/balances",
                        "--header",
                        f"Authorization: Bearer {token}",
                    ),
                    "gateway ListPairs": ("--grpc", gw_target, "--method", LIST_PAIRS),
                    "gateway ListBalances": ("--grpc", gw_target, "--method", LIST_BALANCES),
                    "gateway ListTickers (micro-cache)": (
                        "--grpc",
                        gw_cached["target"],
                        "--method",
                        LIST_TICKERS,
                        "--payload",
                        ticker_request,
                    ),
                }
                for name, cmd in runs.items():
                    r = load(*cmd, "--concurrency", str(c), "--duration", d)
                    results.setdefault(name, {}).setdefault(c, []).append(r)
                    print(
                        f"repeat {repeat + 1} c={c:<3} {name:<36} p50 {r['p50_ms']:.3f} ms  "
                        f"p99 {r['p99_ms']:.3f} ms  {r['rps']:.0f} rps  errors {r['errors']}",
                        flush=True,
                    )
    report(results, levels)


def _token(base: str) -> str:
    body = json.dumps({"api_key": "demo-key", "api_secret": "demo-secret"}).encode()
    request = urllib.request.Request(
        f"{base}/auth", data=body, headers={"Content-Type": "application/json"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=5).read())


def report(results: dict[str, dict[int, list[dict[str, float]]]], levels: list[int]) -> None:
    import statistics

    print(f"\nmachine: {machine()}\n")
    print("| c | call | p50 ms (min/med/max) | p99 ms (med) | rps (min/med/max) |")
    print("|---|---|---|---|---|")
    for c in levels:
        for name, by_c in results.items():
            runs = by_c[c]
            print(
                f"| {c} | {name} | {spread([r['p50_ms'] for r in runs])} | "
                f"{statistics.median(r['p99_ms'] for r in runs):.3f} | {spread([r['rps'] for r in runs])} |"
            )
    print(
        "\nratios (medians; goal: gateway p50 <= 1.1 x (echo p50 + direct p50), cached ListTickers >= 0.8 x echo rps)"
    )
    for c in levels:
        med = {
            name: statistics.median(r["p50_ms"] for r in by_c[c]) for name, by_c in results.items()
        }
        rps = {name: statistics.median(r["rps"] for r in by_c[c]) for name, by_c in results.items()}
        pairs = med["gateway ListPairs"] / (med["echo"] + med["direct GET /pairs"])
        balances = med["gateway ListBalances"] / (
            med["echo"] + med["direct GET /accounts/balances"]
        )
        tickers = rps["gateway ListTickers (micro-cache)"] / rps["echo"]
        print(
            f"c={c:<3} ListPairs p50 / (echo + direct) = {pairs:.2f}   "
            f"ListBalances = {balances:.2f}   cached ListTickers rps / echo rps = {tickers:.2f}"
        )


if __name__ == "__main__":
    main()
