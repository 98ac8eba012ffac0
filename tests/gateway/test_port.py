"""The listen port is exclusive: a second gateway on a taken port fails cleanly, never shares it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
import pytest
from alp.v3 import market_data_pb2, market_data_pb2_grpc

from gateway.app import Gateway
from gateway.rpc.server import BindFailed
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config

REPO = Path(__file__).resolve().parents[2]


async def test_second_gateway_on_the_same_port_fails_and_the_first_keeps_serving(
    sandbox: Sandbox, gateway: Gateway, channel: grpc.aio.Channel
) -> None:
    address = f"127.0.0.1:{gateway.port}"
    second = Gateway(gateway_config(sandbox, listen__port=gateway.port))
    with pytest.raises(BindFailed) as info:
        await second.start()
    assert info.value.address == address
    assert str(info.value) == f"listen: cannot listen on {address}: address already in use"
    # every call still reaches the first gateway (nothing was shared or taken over)
    stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
    for _ in range(5):
        async with grpc.aio.insecure_channel(address) as fresh:
            await market_data_pb2_grpc.MarketDataServiceStub(fresh).GetServerTime(
                market_data_pb2.GetServerTimeRequest(), timeout=5
            )
    await stub.ListPairs(market_data_pb2.ListPairsRequest(), timeout=5)


async def test_gateway_does_not_join_a_port_shared_with_so_reuseport(sandbox: Sandbox) -> None:
    # A server with grpc's default (SO_REUSEPORT on) holds the port; the gateway refuses to join.
    other = grpc.aio.server()
    port = other.add_insecure_port("127.0.0.1:0")
    await other.start()
    try:
        with pytest.raises(BindFailed, match=f"127.0.0.1:{port}"):
            await Gateway(gateway_config(sandbox, listen__port=port)).start()
    finally:
        await other.stop(None)


async def test_cli_exits_2_with_one_line_naming_the_address(
    gateway: Gateway, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "ALP_GATEWAY_METRICS_ENABLED": "false",
        "ALP_GATEWAY_AUDIT_PATH": "",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "generated")]),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--sandbox",
        "--dev-mode",
        "--port",
        str(gateway.port),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:  # it bound the port after all: never leave it running
            process.kill()
            await process.wait()
    text = stderr.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    ours = [line for line in text.splitlines() if line.startswith("alp-gateway:")]
    assert ours == [
        f"alp-gateway: cannot listen on 127.0.0.1:{gateway.port}: address already in use"
    ]
    assert text.rstrip().splitlines()[-1] == ours[0]
    assert b"serving gRPC" not in stdout
