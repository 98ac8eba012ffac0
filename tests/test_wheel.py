"""The wheel carries its runtime dependencies: installed alone in a clean venv, mTLS callers work."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from alp.v3 import account_pb2, account_pb2_grpc, market_data_pb2, market_data_pb2_grpc

from tests.gateway.certs import make_pki

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "gateway", "generated")


def run(*argv: str | Path, cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env() -> dict[str, str]:
    """The environment without anything pointing at the development checkout or its venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO))
    )
    return env


def build_wheel(tmp: Path) -> Path:
    source = tmp / "src"
    source.mkdir()
    for name in SOURCES:  # a copy, so the build leaves nothing in the shared checkout
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    run(
        sys.executable, "-m", "pip", "wheel", source, "--no-deps", "-q", "-w", tmp / "dist", cwd=tmp
    )
    (wheel,) = (tmp / "dist").glob("alp_gateway-*.whl")
    return wheel


def read_until(process: subprocess.Popen[bytes], marker: bytes, within: float) -> bytes:
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while marker not in seen or not seen.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                raise AssertionError(f"no {marker!r} from the gateway; stdout so far: {seen!r}")
            if selector.select(left):
                seen += os.read(process.stdout.fileno(), 4096)
    return seen


@pytest.mark.slow
def test_wheel_in_a_clean_venv_serves_certificate_identified_callers(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path, timeout=180)
    where = run(python, "-c", "import gateway, cryptography; print(gateway.__file__)", cwd=tmp_path)
    assert where.strip().startswith(str(venv)), where

    pki = make_pki(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[listen]
host = "127.0.0.1"
port = 0

[tls]
cert_file = "{pki["server_cert"]}"
key_file = "{pki["server_key"]}"
client_ca_file = "{pki["ca"]}"

[metrics]
enabled = false

[audit]
path = ""

[callers.svc]
cert_subject = "CN=svc-mtls"
scopes = ["market"]
"""
    )
    stderr = (tmp_path / "stderr.log").open("wb")
    process = subprocess.Popen(
        [str(venv / "bin" / "alp-gateway"), "serve", "--sandbox", "--config", str(config)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    try:
        banner = read_until(process, b"serving gRPC on ", within=30).decode()
        address = banner.split("serving gRPC on ", 1)[1].split()[0]
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].read_bytes(),
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client_cert"].read_bytes(),
        )
        with grpc.secure_channel(address, credentials) as channel:
            # identified by its certificate subject (cryptography, at run time): scope market only
            pairs = market_data_pb2_grpc.MarketDataServiceStub(channel).ListPairs(
                market_data_pb2.ListPairsRequest(), timeout=10
            )
            assert any(p.name == "BTC_USDT" for p in pairs.pairs)
            with pytest.raises(grpc.RpcError) as info:
                account_pb2_grpc.AccountServiceStub(channel).ListBalances(
                    account_pb2.ListBalancesRequest(), timeout=10
                )
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "svc" in (info.value.details() or "")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
    log = (tmp_path / "stderr.log").read_text()
    assert process.returncode == 0, log
    assert "Traceback" not in log
