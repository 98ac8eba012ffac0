"""Fleet rate budget: N gateway member processes share one RedisBudget against a sliding-window ALP.

The parent runs the sandbox (enforcing `--limit` private calls per second per token) and a
redis-server on free 127.0.0.1 ports, then starts `--members` processes; each has its own event
loop, Redis client, RateLimiter on a RedisBudget, TokenManager on SharedTokens and RestClient, and
calls GET /accounts/balances as fast as its limiter lets for `--duration` seconds. Reported: the
share of the limit the fleet used (sends after the opening burst / the time they took / limit),
the busiest second, 429s, /auth calls and Redis script calls per send.

    .venv/bin/python -m bench.fleet_budget [--members 3 --limit 10 --margin 0.05 --duration 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from bench._util import redis_server
from gateway.cluster import FleetMembers, RedisBudget, SharedTokens, connect
from gateway.core import rest_requests
from gateway.core.token_policy import Secret
from gateway.errors import RateLimited, UpstreamHttpError, UpstreamTimeout
from gateway.exchange.limiter import RateLimiter
from gateway.exchange.rest_client import AccountSession, RestClient, RetryPolicy
from gateway.exchange.token_manager import TokenManager
from gateway.sandbox import Sandbox, SandboxConfig

NAMESPACE = "bench-fleet"


async def member(args: argparse.Namespace) -> dict[str, Any]:
    redis = connect(args.redis)
    secret = Secret("demo-secret")
    async with aiohttp.ClientSession() as session:
        fleet = FleetMembers(redis, namespace=NAMESPACE, ttl_s=3.0, interval_s=0.5)
        budget = RedisBudget(redis, namespace=NAMESPACE, members=fleet)
        limiter = RateLimiter(
            public_rps=0,
            private_rps=args.limit,
            trading_reserve=0.0,
            margin_s=args.margin,
            shared=budget,
        )
        client = RestClient(args.rest, session, limiter=limiter, retry=RetryPolicy(attempts=1))

        async def authenticate() -> str:
            return await client.authenticate("demo-key", secret)

        shared = SharedTokens(redis, "demo", "demo-key", secret, namespace=NAMESPACE)
        tokens = TokenManager("demo", "demo-key", authenticate, refresh_margin_s=60, shared=shared)
        account = AccountSession("demo", "demo-key", secret, tokens)
        await fleet.join()
        await tokens.token()
        sent = limited = 0

        async def worker(stop_at: float) -> None:
            nonlocal sent, limited
            while time.time() < stop_at:
                try:
                    await client.call(
                        rest_requests.balances(), account=account, deadline=time.monotonic() + 2
                    )
                    sent += 1
                except (RateLimited, UpstreamTimeout):
                    limited += 1
                    await asyncio.sleep(0.02)
                except UpstreamHttpError as exc:  # a 429: counted by the sandbox, reported
                    if exc.http_status != 429:
                        raise

        async with asyncio.TaskGroup() as group:
            beat = group.create_task(fleet.run())
            await asyncio.sleep(max(0.0, args.start_at - time.time()))
            stop_at = args.start_at + args.duration
            await asyncio.gather(*(worker(stop_at) for _ in range(args.workers)))
            beat.cancel()
        await fleet.leave()
    await redis.aclose()
    return {"sent": sent, "limited": limited, "auth": client.stats.auth_calls}


async def script_calls(url: str) -> int:
    redis = connect(url)
    try:
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    return sum(
        int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def run(args: argparse.Namespace) -> None:
    with redis_server() as url:
        async with Sandbox(SandboxConfig(market=False)) as sandbox:
            sandbox.faults.update({"rate_limit_per_s": args.limit})
            start_at = time.time() + 2.0 + 0.3 * args.members
            command = [sys.executable, "-m", "bench.fleet_budget", "--member"]
            command += ["--redis", url, "--rest", sandbox.rest_url, "--start-at", str(start_at)]
            for option in ("limit", "margin", "duration", "workers"):
                command += [f"--{option}", str(getattr(args, option))]
            procs = [
                await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
                for _ in range(args.members)
            ]
            outputs = [json.loads((await p.communicate())[0]) for p in procs]
            calls = await script_calls(url)
            times = sorted(
                t for t, _, path in sandbox.stats.request_log if path == "/api/v3/accounts/balances"
            )
            busiest, first = 0, 0
            for last, t in enumerate(times):
                while t - times[first] >= 1.0:
                    first += 1
                busiest = max(busiest, last - first + 1)
            used = (len(times) - args.limit) / (times[-1] - times[0]) / args.limit
            report = {
                "members": args.members,
                "limit_per_s": args.limit,
                "span_s": 1 + args.margin,
                "sends": len(times),
                "used_of_limit": round(used, 4),
                "ceiling": round(1 / (1 + args.margin), 4),
                "busiest_second": busiest,
                "rate_limited_429": sandbox.stats.rate_limited,
                "auth_calls": sandbox.stats.auth_calls,
                "sends_per_member": [o["sent"] for o in outputs],
                "redis_script_calls_per_send": round(calls / max(1, len(times)), 2),
            }
            print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.05)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=4, help="concurrent callers per member")
    parser.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--rest", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member:
        print(json.dumps(asyncio.run(member(args))))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
