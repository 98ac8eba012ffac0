"""The sandbox on 127.0.0.1:0 and a plain aiohttp client that speaks ALP as the docs describe."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.sandbox import Sandbox, SandboxConfig

KEY, SECRET = "demo-key", "demo-secret"


class AlpClient:
    """The official client's recipe, written from the docs: JWT from /auth, X-SIGN over the body."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token = ""

    async def login(self, key: str = KEY, secret: str = SECRET) -> str:
        async with self.session.post(
            f"{self.base}/auth", json={"api_key": key, "api_secret": secret}
        ) as r:
            assert r.status == 200, await r.text()
            self.token = json.loads(await r.text())
        return self.token

    async def get(self, path: str, private: bool = False, **params: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if private else {}
        async with self.session.get(f"{self.base}{path}", params=params, headers=headers) as r:
            text = await r.text()
            return r.status, json.loads(text, parse_float=str) if text else None

    async def signed(
        self, method: str, path: str, body: Any, secret: str = SECRET, sign: bool = True
    ) -> tuple[int, Any, str]:
        raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if sign:
            headers["X-SIGN"] = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        async with self.session.request(
            method, f"{self.base}{path}", data=raw, headers=headers
        ) as r:
            text = await r.text()
            try:
                payload = json.loads(text, parse_float=str) if text else None
            except ValueError:
                payload = None
            return r.status, payload, text


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(market=False)


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[Sandbox]:
    async with Sandbox(sandbox_config) as running:
        yield running


@pytest.fixture
async def alp(sandbox: Sandbox) -> AsyncIterator[AlpClient]:
    async with aiohttp.ClientSession() as session:
        client = AlpClient(session, sandbox.rest_url)
        await client.login()
        yield client
