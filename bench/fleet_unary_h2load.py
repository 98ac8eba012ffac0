"""Benchmark: unary throughput of one gateway process vs `serve --workers 2`, load from h2load
(issue 14: 2 workers >= 1.6 x one process for ListPairs and cached ListTickers at c = 64).

    .venv/bin/python -m bench.fleet_unary_h2load [--workers 2] [--duration 5] [--repeats 3]
        [--connections 8 --streams-per-connection 8] [--gateway-rev HEAD]

`bench.fleet` drives the calls from 4 Python load generators, which on a 2-core machine use as much
CPU as the gateway itself: the cheap cached ListTickers then measures the loaders, not the workers.
Here the load comes from h2load (nghttp2's C load generator; `bash scripts/bench_deps.sh` installs
it), one thread, --connections HTTP/2 connections (the kernel spreads them over the workers' shared
port, SO_REUSEPORT) with --streams-per-connection calls in flight each (8 x 8 = c 64, closed loop).
A gRPC unary call is an HTTP/2 POST to /alp.v3.MarketDataService/METHOD with `content-type:
application/grpc` and `te: trailers`, its body the 5-byte gRPC frame prefix (0 + 4-byte big-endian
length) and the serialized request (written to a file, `h2load -d FILE`).

h2load only sees HTTP statuses, so every call is checked as gRPC too: before the runs one call of
each method goes through grpcio with the same request bytes (status OK, response parsed), and
after every run each worker's Prometheus `grpc_server_handled_total` for the method is read: the
run counts only if every call h2load made ended with grpc_code OK. So metrics stay on (the
gateway's default; `bench.fleet` switches them off).

Configurations, fresh processes for each (sandbox, redis-server, gateway; all on 127.0.0.1, all
killed on exit): "1 process" (`serve`, no Redis: the baseline), "1 worker + Redis" (`serve
--workers 1` with `cluster.redis_url`) and "W workers" (`serve --workers W` with Redis), as in
`bench.fleet`. Repeats are interleaved (every configuration once per repeat), each ratio is to the
"1 process" run of the same repeat; rows show the median repeat and the min-max. CPU seconds of
every process over each run come from /proc (h2load's from wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

from bench import fleet_fanout as ff
from bench._util import PY, ROOT, cpu_seconds, machine, percentile

RESULTS = ROOT / "bench" / "results"
SERVICE = "/alp.v3.MarketDataService/"
METHODS = {"ListPairs": "ListPairs", "ListTickers (cached)": "ListTickers"}


def request_bytes(method: str) -> bytes:
    """The serialized (empty) request message of `method`."""
    sys.path.insert(0, str(ROOT))
    from generated.alp.v3 import market_data_pb2 as pb

    request = {"ListPairs": pb.ListPairsRequest(), "ListTickers": pb.ListTickersRequest()}[method]
    return bytes(request.SerializeToString())


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


def check_with_grpc(port: int, method: str, message: bytes) -> int:
    """One call through grpcio with the bytes h2load sends: OK, and how many items came back."""
    import grpc

    sys.path.insert(0, str(ROOT))
    from generated.alp.v3 import market_data_pb2 as pb

    response_type = {"ListPairs": pb.ListPairsResponse, "ListTickers": pb.ListTickersResponse}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        raw = channel.unary_unary(SERVICE + method)(message, timeout=10)  # raises unless OK
    reply = response_type[method].FromString(raw)
    return len(reply.pairs) if method == "ListPairs" else len(reply.tickers)  # type: ignore[attr-defined]


def handled(metrics_urls: list[str], method: str) -> dict[str, float]:
    """grpc_server_handled_total of `method` summed over the workers, by grpc_code."""
    pattern = re.compile(r"^grpc_server_handled_total\{([^}]*)\}\s+([0-9.e+]+)$", re.MULTILINE)
    codes: dict[str, float] = {}
    for url in metrics_urls:
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        for labels, value in pattern.findall(text):
            fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if fields.get("grpc_method") == method:
                code = fields.get("grpc_code", "?")
                codes[code] = codes.get(code, 0.0) + float(value)
    return codes


def start_sandbox() -> tuple[ff.Child, dict[str, str]]:
    child = ff.Child(
        [PY, "-m", "gateway", "sandbox", "--port", "0", "--no-market"], cwd=ff.GATEWAY_TREE
    )
    found: dict[str, str] = {}
    while len(found) < 2:
        line = child.expect(lambda s: "ALP sandbox" in s, 60, "sandbox URLs")
        for name, pattern in (("rest", r"REST: (\S+)"), ("ws", r"WS: +(\S+)")):
            match = re.search(pattern, line)
            if match:
                found[name] = match.group(1)
    return child, found


def start_gateway(
    workers: int, redis_url: str | None, rest: str, ws: str
) -> tuple[ff.Child, int, list[str]]:
    """`serve` (redis_url None: no fleet) or `serve --workers W`; waits for every worker's
    serving and metrics lines; returns (child, port, metrics URLs)."""
    port = ff.free_port()
    env = {
        "ALP_GATEWAY_UPSTREAM_REST_URL": rest,
        "ALP_GATEWAY_UPSTREAM_WS_URL": ws,
        "ALP_GATEWAY_METRICS_ENABLED": "true",
        "ALP_GATEWAY_METRICS_PORT": "0",  # every worker: any free port, printed
        "ALP_GATEWAY_AUDIT_PATH": "",
        "ALP_GATEWAY_LOG_LEVEL": "ERROR",
        "ALP_GATEWAY_HEALTH_HTTP_PORT": "0",
        "ALP_GATEWAY_UPSTREAM_PUBLIC_RPS": "0",
        "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
        "ALP_GATEWAY_DRAIN_GRACE_S": "1",
    }
    command = [PY, "-m", "gateway", "serve", "--dev-mode", "--port", str(port)]
    if redis_url:
        env["ALP_GATEWAY_CLUSTER_REDIS_URL"] = redis_url
        command += ["--workers", str(workers)]
    child = ff.Child(command, env, cwd=ff.GATEWAY_TREE)
    serving, metrics = 0, []
    while serving < workers or len(metrics) < workers:
        line = child.expect(lambda s: "serving gRPC on" in s or "metrics: " in s, 60, "workers")
        serving += line.count("serving gRPC on")
        metrics += re.findall(r"metrics: (http://\S+?/metrics)", line)
    return child, port, metrics


def run_h2load(
    port: int,
    method: str,
    body: Path,
    log: Path,
    worker_pids: list[int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    command = [
        shutil.which("h2load") or "h2load",
        "-t",
        "1",
        "-c",
        str(args.connections),
        "-m",
        str(args.streams_per_connection),
        "-D",
        f"{round(args.duration * 1000)}ms",
        "--warm-up-time",
        f"{round(args.warmup * 1000)}ms",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--log-file",
        str(log),
        f"http://127.0.0.1:{port}{SERVICE}{method}",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    ff.CHILDREN.append(proc)  # type: ignore[arg-type]
    time.sleep(args.warmup + args.duration / 2)  # mid-window: h2load's connections are open
    connections = ff.connections_per_pid(worker_pids, port)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    ff.CHILDREN.remove(proc)  # type: ignore[arg-type]
    if proc.returncode != 0:
        raise RuntimeError(f"h2load exited {proc.returncode}:\n{output}")
    numbers = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        output,
    )
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", output)
    if not (numbers and statuses and finished):
        raise RuntimeError(f"h2load output not understood:\n{output}")
    durations = []  # log: start time, HTTP status, duration (us) per request of the window
    for row in log.read_text().splitlines():
        parts = row.split()
        if len(parts) >= 3:
            durations.append(int(parts[2]) / 1000.0)
    _, _, done, succeeded, failed, errored, timeouts = (int(x) for x in numbers.groups())
    return {
        "rps": float(finished.group(3)),
        "done": done,
        "succeeded": succeeded,
        "failed": failed + errored + timeouts,
        "http_2xx": int(statuses.group(1)),
        "p50_ms": percentile(durations, 50),
        "p99_ms": percentile(durations, 99),
        "logged": len(durations),
        "h2load_cpu_s": usage.ru_utime + usage.ru_stime,
        "connections_per_worker": connections,
        "output": output,
    }


def measure_config(
    name: str, workers: int, use_redis: bool, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    children: list[ff.Child] = []
    try:
        sandbox, urls = start_sandbox()
        children.append(sandbox)
        redis_url = None
        redis_pid = None
        if use_redis:
            redis, redis_url = ff.start_redis(str(workdir))
            children.append(redis)
            redis_pid = redis.proc.pid
        gateway, port, metrics_urls = start_gateway(workers, redis_url, urls["rest"], urls["ws"])
        children.append(gateway)
        if redis_url:
            worker_pids, supervisor = ff.gateway_pids(gateway, workers)
        else:
            worker_pids, supervisor = [gateway.proc.pid], []
        time.sleep(1.0 + workers)  # every worker up and past its first health check
        result: dict[str, Any] = {"config": name, "workers": workers, "methods": {}}
        for label, method in METHODS.items():
            message = request_bytes(method)
            items = check_with_grpc(port, method, message)
            body = workdir / f"{method}.bin"
            body.write_bytes(grpc_frame(message))
            log = workdir / f"{method}-{name.replace(' ', '_')}.log"
            before_codes = handled(metrics_urls, method)
            pids = {
                "workers": worker_pids,
                "supervisor": supervisor,
                "sandbox": [sandbox.proc.pid],
                "redis": [redis_pid] if redis_pid else [],
            }
            cpu_before = {k: [cpu_seconds(p) for p in v] for k, v in pids.items()}
            busy_before, wall_before = ff.machine_busy_seconds(), time.monotonic()
            run = run_h2load(port, method, body, log, worker_pids, args)
            busy = ff.machine_busy_seconds() - busy_before
            wall = time.monotonic() - wall_before
            cpu = {
                k: [cpu_seconds(p) - b for p, b in zip(v, cpu_before[k], strict=True)]
                for k, v in pids.items()
            }
            after_codes = handled(metrics_urls, method)
            codes = {c: after_codes.get(c, 0.0) - before_codes.get(c, 0.0) for c in after_codes}
            # h2load's done count excludes the warm-up: every call it completed must show up as OK;
            # when the window ends it resets the calls still in flight (at most c: Canceled)
            in_flight = args.connections * args.streams_per_connection
            failed = sum(v for c, v in codes.items() if c not in ("OK", "Canceled"))
            if (
                failed
                or codes.get("Canceled", 0.0) > in_flight
                or codes.get("OK", 0.0) < run["succeeded"]
            ):
                raise RuntimeError(f"{name} {label}: grpc codes {codes}, h2load {run['output']}")
            run.pop("output")
            known = run["h2load_cpu_s"] + sum(sum(v) for v in cpu.values())
            result["methods"][label] = {
                **run,
                "grpc_codes": codes,
                "grpc_check_items": items,
                "cpu": cpu,
                "wall_s": wall,
                "machine_busy_s": busy,
                "other_cpu_s": max(0.0, busy - known),
            }
            print(
                f"{name:17} {label:21} {run['rps']:8.0f} calls/s p50 {run['p50_ms']:6.2f} "
                f"p99 {run['p99_ms']:6.2f} ms  grpc {codes}  gateway cpu "
                f"{[round(x, 2) for x in cpu['workers']]} h2load {run['h2load_cpu_s']:.2f} "
                f"sandbox {sum(cpu['sandbox']):.2f} busy {busy / wall / (os.cpu_count() or 1):.0%}",
                flush=True,
            )
        return result
    finally:
        for child in reversed(children):
            child.stop(grace=5.0)


def report(runs: list[dict[str, Any]], configs: list[str], args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    print(
        f"\nmachine: {machine()}; h2load 1 thread, {args.connections} connections x "
        f"{args.streams_per_connection} streams = c {args.connections * args.streams_per_connection}"
        f", {args.duration:g} s (+{args.warmup:g} s warm-up) per run, {args.repeats} repeats"
    )
    print(
        "\n| configuration | call | calls/s (median) | x 1 process (median; min-max) | "
        "calls/s over repeats | p50 ms | p99 ms | grpc OK / cut at stop / other, all repeats | "
        "connections per worker |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    cpu_rows = []
    for config in configs:
        for label in METHODS:
            rows, ratios = [], []
            for repeat in sorted({r["repeat"] for r in runs}):
                mine = [r for r in runs if r["repeat"] == repeat and r["config"] == config]
                base = [r for r in runs if r["repeat"] == repeat and r["config"] == configs[0]]
                if mine and base:
                    row = mine[0]["methods"][label]
                    rows.append(row)
                    ratios.append(row["rps"] / base[0]["methods"][label]["rps"])
            if not rows:
                continue
            rows.sort(key=lambda r: r["rps"])
            mid = rows[(len(rows) - 1) // 2]
            ok = sum(r["grpc_codes"].get("OK", 0.0) for r in rows)
            cut = sum(r["grpc_codes"].get("Canceled", 0.0) for r in rows)
            other = sum(
                v for r in rows for c, v in r["grpc_codes"].items() if c not in ("OK", "Canceled")
            )
            print(
                f"| {config} | {label} | {mid['rps']:,.0f} | {median(ratios):.2f} "
                f"({min(ratios):.2f}-{max(ratios):.2f}) | {rows[0]['rps']:,.0f}-"
                f"{rows[-1]['rps']:,.0f} | {mid['p50_ms']:.2f} | {mid['p99_ms']:.2f} | "
                f"{ok:,.0f} / {cut:,.0f} / {other:,.0f} | "
                f"{'/'.join(map(str, mid['connections_per_worker']))} |"
            )
            cpu_rows.append((config, label, mid))
    window = args.duration + args.warmup
    print(
        f"\nCPU seconds over the median run of each row (~{window:g} s: warm-up + window; "
        f"{cores} cores = {cores * window:g} CPU s):\n"
    )
    print(
        "| configuration | call | gateway CPU s (per worker) | gateway us/call | sandbox | redis | "
        "h2load | other processes | machine busy |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for config, label, row in cpu_rows:
        gateway = sum(row["cpu"]["workers"]) + sum(row["cpu"]["supervisor"])
        calls = row["grpc_codes"].get("OK", 0.0)
        per = "+".join(f"{x:.1f}" for x in row["cpu"]["workers"])
        print(
            f"| {config} | {label} | {gateway:.1f} ({per}) | {gateway / max(calls, 1) * 1e6:.0f} | "
            f"{sum(row['cpu']['sandbox']):.2f} | {sum(row['cpu']['redis']):.2f} | "
            f"{row['h2load_cpu_s']:.2f} | {row['other_cpu_s']:.1f} | "
            f"{row['machine_busy_s'] / row['wall_s'] / cores:.0%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="2", help="comma-separated worker counts (> 1)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="h2load warm-up seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--streams-per-connection", type=int, default=8)
    parser.add_argument("--out", default="fleet_unary_h2load.json", help="in bench/results/")
    parser.add_argument(
        "--gateway-rev",
        help="run the gateway from this git revision (a git archive in /tmp), not the checkout",
    )
    args = parser.parse_args()
    if not shutil.which("h2load"):
        raise SystemExit("h2load is needed: `bash scripts/bench_deps.sh` installs it")

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    counts = [int(x) for x in args.workers.split(",") if int(x) > 1]
    configs = [("1 process", 1, False), ("1 worker + Redis", 1, True)]
    configs += [(f"{n} workers", n, True) for n in counts]
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="alp-fleet-h2load-") as tmp:
            tree = Path(tmp) / "tree"
            tree.mkdir()
            if args.gateway_rev:
                ff.GATEWAY_TREE, sha = ff.extract(args.gateway_rev, tree)
                print(f"gateway: revision {sha} (git archive in {tree})", flush=True)
            else:
                print(f"gateway: the checkout {ROOT} as it is", flush=True)
            for repeat in range(args.repeats):
                for name, workers, use_redis in configs:
                    workdir = Path(tmp) / f"run-{repeat}-{workers}-{int(use_redis)}"
                    workdir.mkdir()
                    result = measure_config(name, workers, use_redis, args, workdir)
                    result["repeat"] = repeat
                    runs.append(result)
    except KeyboardInterrupt:
        print("interrupted: stopping every process this benchmark started", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        ff.stop_all()
    report(runs, [c[0] for c in configs], args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    print(f"\ntotal {time.monotonic() - started:.0f} s; raw runs in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
