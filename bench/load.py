"""Closed-loop load generator (own process): `concurrency` workers call back-to-back for `duration`.

Prints one JSON line: calls, errors, rps, p50_ms, p99_ms. Raw bytes on the gRPC side so the client
measures the server, not its own protobuf work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from bench._util import percentile


async def run_grpc(
    target: str,
    method: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
    concurrency: int,
    duration: float,
) -> dict[str, float]:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        await call(payload, metadata=metadata)  # warm
        return await _drive(lambda: call(payload, metadata=metadata), concurrency, duration)


async def run_http(
    url: str, headers: dict[str, str], concurrency: int, duration: float
) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def once() -> None:
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(response.status)

        await once()
        return await _drive(once, concurrency, duration)


async def _drive(call, concurrency: int, duration: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await call()
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {
        "calls": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc", help="target host:port")
    parser.add_argument("--method", default="")
    parser.add_argument("--payload", default="")
    parser.add_argument("--metadata", default="")
    parser.add_argument("--http", help="URL")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    import uvloop

    if args.grpc:
        metadata = tuple(tuple(kv.split("=", 1)) for kv in args.metadata.split(",") if kv)
        coro = run_grpc(
            args.grpc,
            args.method,
            bytes.fromhex(args.payload),
            metadata,  # type: ignore[arg-type]
            args.concurrency,
            args.duration,
        )
    else:
        headers = dict(h.split(": ", 1) for h in args.header)
        coro = run_http(args.http, headers, args.concurrency, args.duration)
    print(json.dumps(uvloop.run(coro)), flush=True)


if __name__ == "__main__":
    main()
