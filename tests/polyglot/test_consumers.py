"""Go, Node and grpcurl consumers against a real gateway process: the contract works off-Python."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.rpc import status_pb2

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# googleapis-common-protos ships google/rpc/*.proto beside its modules: the include root for them.
PROTO_ROOT_OF_GOOGLE_RPC = Path(status_pb2.__file__).resolve().parents[2]

pytestmark = pytest.mark.polyglot  # toolchains and a gateway process: `make unit` leaves them out


def run(command: list[str], timeout: float = 120) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, f"{command[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.skipif(shutil.which("go") is None, reason="Go toolchain missing: run make test")
def test_go_client(gateway_process: str, tmp_path: Path) -> None:
    binary = run(["bash", "clients/go/build.sh", str(tmp_path / "go")]).strip().splitlines()[-1]
    output = run([binary, "-target", gateway_process, "-trades", "5"])
    assert "ALL OK" in output
    assert "OK ListPairs" in output and "OK StreamTrades 5 trades" in output
    # one Subscribe stream of two channels: a SUBSCRIBED per topic and a line per kind received
    assert "OK Subscribe status STREAM_STATE_SUBSCRIBED trade.BTC_USDT" in output
    assert "OK Subscribe status STREAM_STATE_SUBSCRIBED ticker.*" in output
    assert "OK Subscribe trade BTC_USDT id " in output
    assert "OK Subscribe ticker BTC_USDT close " in output
    assert "OK Subscribe 2 channels" in output
    assert "ErrorInfo alp.com/2002" in output
    assert "BadRequest field" in output


@pytest.mark.skipif(shutil.which("node") is None, reason="Node missing: run make test")
def test_node_client(gateway_process: str) -> None:
    output = run(
        [
            "node",
            "clients/node/client.js",
            gateway_process,
            str(ROOT / "protos"),
            str(PROTO_ROOT_OF_GOOGLE_RPC),
            "5",
        ]
    )
    assert "ALL OK" in output and "ErrorInfo alp.com/2002" in output


@pytest.mark.skipif(shutil.which("javac") is None, reason="JDK missing: run make test")
def test_java_client(gateway_process: str, tmp_path: Path) -> None:
    classpath = (
        run(
            ["bash", "clients/java/build.sh", str(tmp_path / "java"), str(PROTO_ROOT_OF_GOOGLE_RPC)]
        )
        .strip()
        .splitlines()[-1]
    )
    output = run(
        [
            "java",
            f"-Dgateway.target={gateway_process}",
            "-jar",
            "/usr/share/java/junit-platform-console-standalone.jar",
            "--class-path",
            classpath,
            "--select-class",
            "GatewayClientTest",
            "--disable-banner",
            "--details=summary",
        ]
    )
    assert "4 tests successful" in output and "0 tests failed" in output


def grpcurl(*args: str) -> str:
    return run([str(BIN / "grpcurl"), "-plaintext", *args], timeout=60)


def test_grpcurl_reflection_unary_stream_and_health(gateway_process: str) -> None:
    services = grpcurl(gateway_process, "list").split()
    for name in (
        "alp.v3.MarketDataService",
        "alp.v3.AccountService",
        "alp.v3.TradingService",
        "alp.v3.StreamService",
        "grpc.health.v1.Health",
    ):
        assert name in services
    described = grpcurl(gateway_process, "describe", "alp.v3.TradingService")
    assert "rpc PlaceOrder" in described and "rpc CancelOrders" in described
    pairs = json.loads(grpcurl("-d", "{}", gateway_process, "alp.v3.MarketDataService/ListPairs"))
    assert any(p["name"] == "BTC_USDT" for p in pairs["pairs"])
    placed = json.loads(
        grpcurl(
            "-H",
            "x-alp-account: demo",
            "-d",
            '{"pair": "BTC_USDT", "side": "ORDER_SIDE_BUY", "client_order_id": "grpcurl-1", '
            '"limit": {"base_amount": "0.01", "limit_price": "1000.00"}}',
            gateway_process,
            "alp.v3.TradingService/PlaceOrder",
        )
    )
    assert int(placed["order_id"]) > 0 and placed["client_order_id"] == "grpcurl-1"
    health = json.loads(grpcurl(gateway_process, "grpc.health.v1.Health/Check"))
    assert health["status"] == "SERVING"


def first_streamed_message(*args: str, timeout: float = 30) -> dict[str, object]:
    """Start a grpcurl stream, return its first message, stop it."""
    process = subprocess.Popen(
        [str(BIN / "grpcurl"), "-plaintext", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    buffered = ""
    try:
        for line in process.stdout:
            buffered += line
            if line.startswith("}"):
                return dict(json.loads(buffered))
        raise AssertionError("stream ended without a message")
    finally:
        process.kill()
        process.wait(timeout)


def test_grpcurl_stream(gateway_process: str) -> None:
    message = first_streamed_message(
        "-d",
        '{"pair": "BTC_USDT", "depth": 5}',
        gateway_process,
        "alp.v3.StreamService/StreamOrderBook",
    )
    updates = message["updates"]
    assert isinstance(updates, list)
    first = updates[0]
    assert first["snapshot"] is True and first["sequence"] == "1"
    assert len(first["bids"]) <= 5
