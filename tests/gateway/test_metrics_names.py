"""What dashboards and tools read: /metrics under standard gRPC names (linted by promtool), access-log
lines that name request, caller, account and peer, and server reflection as v1 and v1alpha."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from alp.v3 import (
    account_pb2,
    account_pb2_grpc,
    market_data_pb2,
    market_data_pb2_grpc,
    stream_pb2,
    stream_pb2_grpc,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway
from gateway.logs import REDACTOR, TEXT_FORMAT, JsonFormatter
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@pytest.fixture
async def metered(sandbox: Sandbox) -> AsyncIterator[tuple[Gateway, grpc.aio.Channel]]:
    config = gateway_config(sandbox, metrics__enabled=True, metrics__port=0)
    async with Gateway(config) as gateway:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            yield gateway, channel


async def scrape(gateway: Gateway) -> str:
    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    return await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


async def exercise(channel: grpc.aio.Channel) -> None:
    """One OK unary call, one refused unary call, one private call, one cancelled stream."""
    market = market_data_pb2_grpc.MarketDataServiceStub(channel)
    await market.ListPairs(market_data_pb2.ListPairsRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await market.GetOrderBook(market_data_pb2.GetOrderBookRequest(pair="NOPE_USDT"))
    await account_pb2_grpc.AccountServiceStub(channel).ListBalances(
        account_pb2.ListBalancesRequest()
    )
    stream = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
        stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"])
    )
    await stream.read()
    stream.cancel()
    await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())


async def test_grpc_server_metrics_under_go_grpc_prometheus_names(
    metered: tuple[Gateway, grpc.aio.Channel],
) -> None:
    gateway, channel = metered
    await exercise(channel)
    for _ in range(100):  # the cancelled stream's handler finishes on its own schedule
        found = samples(await scrape(gateway))
        stream = {"grpc_type": "server_stream", "grpc_service": "alp.v3.StreamService"}
        key = (
            "grpc_server_handled_total",
            frozenset({**stream, "grpc_method": "StreamTrades", "grpc_code": "Canceled"}.items()),
        )
        if key in found:
            break
        await asyncio.sleep(0.05)
    market = {"grpc_type": "unary", "grpc_service": "alp.v3.MarketDataService"}
    assert value(found, "grpc_server_started_total", **market, grpc_method="ListPairs") == 1
    assert (
        value(found, "grpc_server_handled_total", **market, grpc_method="ListPairs", grpc_code="OK")
        == 1
    )
    refused = [
        dict(labels)["grpc_code"]
        for (name, labels) in found
        if name == "grpc_server_handled_total" and ("grpc_method", "GetOrderBook") in labels
    ]
    assert refused and all(re.fullmatch(r"[A-Z][A-Za-z]+", code) for code in refused)
    assert refused[0] in ("InvalidArgument", "NotFound")  # Go's names, not NOT_FOUND
    assert (
        value(found, "grpc_server_handling_seconds_count", **market, grpc_method="ListPairs") == 1
    )
    assert value(found, "grpc_server_started_total", **stream, grpc_method="StreamTrades") == 1
    # stream lifetimes stay out of the latency histogram
    assert not [
        labels
        for (name, labels) in found
        if name.startswith("grpc_server_handling_seconds") and ("grpc_type", "unary") not in labels
    ]
    health = {"grpc_type": "unary", "grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
    assert value(found, "grpc_server_handled_total", **health, grpc_code="OK") == 1
    # the gateway's own families stay
    assert (
        value(
            found, "alp_gateway_rpc_total", method="/alp.v3.MarketDataService/ListPairs", code="OK"
        )
        == 1
    )


async def test_process_build_health_and_token_gauges(
    metered: tuple[Gateway, grpc.aio.Channel], sandbox: Sandbox
) -> None:
    gateway, channel = metered
    await exercise(channel)
    text = await scrape(gateway)
    found = samples(text)
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "process_open_fds") > 0
    assert ("python_info", frozenset()) not in found  # platform collector: labelled
    assert any(name == "python_info" for name, _ in found)
    assert value(found, "alp_gateway_build_info", version="0.1.0") == 1
    assert value(found, "alp_gateway_serving") == 1
    for service in ("alp.v3.MarketDataService", "alp.v3.AccountService", "alp.v3.StreamService"):
        assert value(found, "alp_gateway_service_serving", service=service) == 1
    left = value(found, "alp_gateway_token_expiry_seconds", account="demo")
    assert 0 < left <= 24 * 3600
    assert ("alp_gateway_token_expiry_seconds", frozenset({("account", "desk-b")})) not in found
    assert value(found, "alp_gateway_account_up", account="desk-b") == 1
    # StreamHub.stats reaches /metrics through GatewayState
    assert value(found, "alp_gateway_stream_events_unencodable_total") == 0
    assert value(found, "alp_gateway_stream_events_oversize_total") == 0
    assert gateway.hub is not None
    gateway.hub.stats.oversize += 2
    assert value(samples(await scrape(gateway)), "alp_gateway_stream_events_oversize_total") == 2
    # no token, no secret
    assert gateway.upstream is not None
    token = gateway.upstream.account("demo").tokens.current()
    assert token and token not in text and "demo-secret" not in text


def lint(text: str) -> list[str]:
    """What promtool's lint checks that prometheus_client's parser can see: names, HELP, _total."""
    problems = []
    for family in text_string_to_metric_families(text):
        if not METRIC_NAME.fullmatch(family.name):
            problems.append(f"bad name {family.name}")
        if not family.documentation:
            problems.append(f"{family.name} has no help")
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                problems.append(f"counter sample {sample.name} without _total")
            problems += [f"bad label {n}" for n in sample.labels if not LABEL_NAME.fullmatch(n)]
    return problems


async def test_metrics_pass_promtool(metered: tuple[Gateway, grpc.aio.Channel]) -> None:
    gateway, channel = metered
    await exercise(channel)
    text = await scrape(gateway)
    assert lint(text) == []
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing: scripts/polyglot_deps.sh installs it (make test)")
        pytest.skip("promtool not installed (make polyglot-deps installs it)")
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def access_log() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The access logger through the real text and JSON formatters and the redacting filter."""
    logger = logging.getLogger("gateway.access")
    streams = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(stream) for stream in streams]
    handlers[0].setFormatter(logging.Formatter(TEXT_FORMAT))
    handlers[1].setFormatter(JsonFormatter())
    level = logger.level
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.addFilter(REDACTOR)
        logger.addHandler(handler)
    try:
        yield streams
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)


async def test_access_lines_name_request_caller_account_and_peer(
    channel: grpc.aio.Channel, access_log: tuple[io.StringIO, io.StringIO]
) -> None:
    text, jsonl = access_log
    market = market_data_pb2_grpc.MarketDataServiceStub(channel)
    await market.ListPairs(
        market_data_pb2.ListPairsRequest(), metadata=(("x-request-id", "req-1"),)
    )
    await account_pb2_grpc.AccountServiceStub(channel).ListBalances(
        account_pb2.ListBalancesRequest(),
        metadata=(("x-request-id", "req-2"), ("x-alp-account", "desk-b")),
    )
    await market.ListPairs(
        market_data_pb2.ListPairsRequest(),
        metadata=(
            ("x-request-id", "req-3"),
            ("x-alp-account", "a b eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"),
        ),
    )
    lines = text.getvalue().splitlines()
    assert len(lines) == 3
    peer = r"ipv4:127\.0\.0\.1:\d+"
    assert re.search(
        rf"rpc /alp\.v3\.MarketDataService/ListPairs OK [\d.]+ms request_id=req-1 caller=dev-mode "
        rf"account=demo peer={peer}$",
        lines[0],
    ), lines[0]
    assert re.search(r"request_id=req-2 caller=dev-mode account=desk-b peer=", lines[1])
    # no account name could look like that: a short hash, one token, nothing of the JWT
    assert re.search(r"account=sha256:[0-9a-f]{12} peer=", lines[2]), lines[2]
    entries = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    assert [e["request_id"] for e in entries] == ["req-1", "req-2", "req-3"]
    first = entries[1]
    assert first["rpc_method"] == "/alp.v3.AccountService/ListBalances"
    assert first["rpc_code"] == "OK" and first["caller"] == "dev-mode"
    assert first["account"] == "desk-b" and re.fullmatch(peer, first["peer"])
    assert isinstance(first["rpc_ms"], float)
    assert "eyJ" not in jsonl.getvalue()


def v1_messages() -> tuple[Any, Any]:
    pool = descriptor_pool.Default()
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    return request, response


async def test_reflection_v1_and_v1alpha_list_the_same_services(channel: grpc.aio.Channel) -> None:
    alpha = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await alpha.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed_alpha = {s.name for s in (await alpha.read()).list_services_response.service}
    await alpha.done_writing()

    request, response = v1_messages()
    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )()
    await v1.write(request(list_services=""))
    listed_v1 = {s.name for s in (await v1.read()).list_services_response.service}
    await v1.write(request(file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    described = await v1.read()
    await v1.write(request(file_containing_symbol="alp.v3.MarketDataService"))
    market = await v1.read()
    await v1.done_writing()

    assert listed_v1 == listed_alpha
    assert {
        "alp.v3.MarketDataService",
        "alp.v3.AccountService",
        "alp.v3.TradingService",
        "alp.v3.StreamService",
        "alp.v3.GatewayService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= listed_v1
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    v1_file = next(f for f in files if f.package == "grpc.reflection.v1")
    assert [s.name for s in v1_file.service] == ["ServerReflection"]
    assert v1_file.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert market.file_descriptor_response.file_descriptor_proto
