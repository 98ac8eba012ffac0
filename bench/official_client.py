"""Benchmark 2: place + cancel via the gateway vs the official client's recipe straight to ALP.

    .venv/bin/python -m bench.official_client [--iterations 300] [--repeats 3]

The official Python client (`alpcom-api`) signs each POST/DELETE and sends it with a fresh
`requests` call (a new session, so a new TCP connection, per signed request); it fetches the JWT
once per client instance, which we grant it here (its most favourable case). The gateway path is a
gRPC PlaceOrder + CancelOrders through a warm channel. Same sandbox process, interleaved repeats.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import time

import grpc
import requests
from alp.v3 import common_pb2, trading_pb2, trading_pb2_grpc

from bench._util import gateway, machine, percentile, sandbox, spread

BODY = {
    "pair": "BTC_USDT",
    "order_type": "LIMIT",
    "order_side": "BUY",
    "wallet_type": "SPOT",
    "base_amount": "0.01",
    "limit_price": "20000",
}


def official(base: str, iterations: int) -> list[float]:
    secret = "demo-secret"
    token = requests.post(
        f"{base}/auth", json={"api_key": "demo-key", "api_secret": secret}, timeout=5
    ).json()
    latencies = []
    for _ in range(iterations):
        started = time.perf_counter()
        body = json.dumps(BODY).encode()
        sign = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Authorization": f"Bearer {token}",
            "X-SIGN": sign,
            "Content-Type": "application/json",
        }
        order_id = requests.post(
            f"{base}/trading/order", data=body, headers=headers, timeout=5
        ).json()[0]
        body = json.dumps({"order_ids": [order_id]}).encode()
        headers["X-SIGN"] = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        reply = requests.delete(
            f"{base}/trading/order", data=body, headers=headers, timeout=5
        ).json()
        assert reply[str(order_id)] == "CANCELLED"
        latencies.append(time.perf_counter() - started)
    return latencies


def through_gateway(stub: trading_pb2_grpc.TradingServiceStub, iterations: int) -> list[float]:
    request = trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price="20000"),
    )
    latencies = []
    for _ in range(iterations):
        started = time.perf_counter()
        placed = stub.PlaceOrder(request, timeout=5)
        reply = stub.CancelOrders(
            trading_pb2.CancelOrdersRequest(
                order_ids=trading_pb2.OrderIdList(ids=[placed.order_id])
            ),
            timeout=5,
        )
        assert reply.outcomes[placed.order_id].status == trading_pb2.CANCEL_STATUS_CANCELLED
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[list[float]]] = {"official recipe": [], "gateway": []}
    with sandbox() as (_, upstream), gateway(upstream) as (_, gw):
        with grpc.insecure_channel(gw["target"]) as channel:
            stub = trading_pb2_grpc.TradingServiceStub(channel)
            through_gateway(stub, 20)  # warm: token, pair rules, connections
            for repeat in range(args.repeats):
                results["official recipe"].append(official(upstream["rest"], args.iterations))
                results["gateway"].append(through_gateway(stub, args.iterations))
                for name, runs in results.items():
                    last = runs[-1]
                    print(
                        f"repeat {repeat + 1} {name:<16} p50 {percentile(last, 50) * 1000:.3f} ms "
                        f"p99 {percentile(last, 99) * 1000:.3f} ms",
                        flush=True,
                    )
    print(f"\nmachine: {machine()}; {args.iterations} place+cancel pairs per repeat\n")
    print("| path | p50 ms (min/med/max over repeats) | p99 ms (min/med/max) |")
    print("|---|---|---|")
    p50s = {n: [percentile(r, 50) * 1000 for r in runs] for n, runs in results.items()}
    for name, runs in results.items():
        print(
            f"| {name} | {spread(p50s[name])} | {spread([percentile(r, 99) * 1000 for r in runs])} |"
        )
    ratio = statistics.median(p50s["gateway"]) / statistics.median(p50s["official recipe"])
    print(f"\nratio gateway p50 / official recipe p50 = {ratio:.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
