"""A real `alp-gateway serve --sandbox` process (market activity on) for non-Python consumers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = dict(os.environ)
    env.update(
        {
            "ALP_GATEWAY_AUDIT_PATH": str(tmp_path_factory.mktemp("audit") / "audit.jsonl"),
            "ALP_GATEWAY_METRICS_PORT": "0",
            "ALP_GATEWAY_SANDBOX_MARKET": "true",
            "ALP_GATEWAY_UPSTREAM_PUBLIC_RPS": "0",
            "ALP_GATEWAY_UPSTREAM_PRIVATE_RPS": "0",
            "ALP_GATEWAY_LOG_LEVEL": "WARNING",
        }
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--sandbox",
            "--dev-mode",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    target = ""
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"serving gRPC on ([\d.]+:\d+)", line)
        if match:
            target = match.group(1)
            break
    if not target:
        process.kill()
        pytest.fail("gateway did not start:\n" + "".join(lines))
    try:
        yield target
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
