"""Composition root: builds the gateway from its config, starts it in dependency order, stops it."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from gateway.config import AccountCredentials, GatewayConfig
from gateway.core.token_policy import Secret
from gateway.errors import Draining
from gateway.exchange.limiter import RateLimiter
from gateway.exchange.rest_client import AccountSession, RestClient, RetryPolicy
from gateway.exchange.token_manager import TokenManager
from gateway.exchange.upstream import Upstream
from gateway.exchange.ws_connection import WsSettings
from gateway.exchange.ws_private import PrivateFeed
from gateway.exchange.ws_public import PublicFeed
from gateway.rpc.server import build_server, set_serving
from gateway.rpc.stream import StreamServicer
from gateway.rpc.stream_hub import StreamHub

log = logging.getLogger(__name__)

# Credentials of the embedded sandbox's built-in accounts (public demo values, not secrets).
SANDBOX_ACCOUNTS = {
    "demo": ("demo-key", "demo-secret"),
    "desk-b": ("desk-b-key", "desk-b-secret"),
}


class Gateway:
    """The running gateway: optional embedded sandbox, upstream session, gRPC server."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.port = 0
        self.sandbox: Any = None
        self.upstream: Upstream | None = None
        self._stack = AsyncExitStack()
        self._server: Any = None
        self._health: Any = None
        self.public_feed: PublicFeed | None = None
        self.private_feeds: dict[str, PrivateFeed] = {}
        self.streams: StreamServicer | None = None
        self.hub: StreamHub | None = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        config = self.config
        if config["sandbox.enabled"]:
            config = await self._start_sandbox(config)
            self.config = config
        if not config.accounts:
            log.warning(
                "no ALP accounts configured: only MarketDataService and public streams work"
            )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config["upstream.max_connections"], keepalive_timeout=30, ttl_dns_cache=300
            ),
            headers={"User-Agent": "alp-grpc-gateway/0.1"},
        )
        self._stack.push_async_callback(session.close)
        client = RestClient(
            config["upstream.rest_url"],
            session,
            retry=RetryPolicy(
                attempts=config["upstream.retry_attempts"],
                base_s=config["upstream.retry_base_s"],
                cap_s=config["upstream.retry_cap_s"],
            ),
            default_timeout_s=config["upstream.timeout_s"],
            limiter=RateLimiter(
                public_rps=config["upstream.public_rps"],
                private_rps=config["upstream.private_rps"],
            ),
        )
        accounts = {
            name: self._account_session(client, creds) for name, creds in config.accounts.items()
        }
        self.upstream = Upstream(
            client,
            accounts,
            config.default_account,
            public_cache_ttl_s=config["upstream.public_cache_ttl_s"],
            pairs_ttl_s=config["upstream.pairs_ttl_s"],
        )
        ws_settings = WsSettings(
            url=config["upstream.ws_url"],
            stale_after_s=config["ws.stale_after_s"],
            reconnect_base_s=config["ws.reconnect_base_s"],
            reconnect_cap_s=config["ws.reconnect_cap_s"],
            max_frame_bytes=config["ws.max_frame_bytes"],
        )
        self.public_feed = PublicFeed(
            session,
            ws_settings,
            max_topics_per_connection=config["ws.max_topics_per_connection"],
            linger_s=config["ws.linger_s"],
        )
        self._stack.push_async_callback(self._close_feeds)
        upstream = self.upstream

        def private_feed(account: str) -> PrivateFeed:
            feed = self.private_feeds.get(account)
            if feed is None:
                session_of = upstream.account(account)
                feed = PrivateFeed(
                    account,
                    session,
                    ws_settings,
                    session_of.tokens,
                    linger_s=config["ws.linger_s"],
                )
                self.private_feeds[account] = feed
            return feed

        self.hub = StreamHub(self.public_feed, private_feed)
        self.streams = StreamServicer(
            self.hub, self.public_feed, self.upstream, queue_limit=config["stream.queue_limit"]
        )
        server, health = build_server(
            self.upstream,
            streams=self.streams,
            deadline_margin_s=config["upstream.deadline_margin_s"],
            default_timeout_s=config["upstream.timeout_s"],
            wallet_spelling=config["upstream.wallet_spelling"],
        )
        self.port = server.add_insecure_port(f"{config['listen.host']}:{config['listen.port']}")
        await server.start()
        self._server, self._health = server, health
        await set_serving(health, True)
        log.info("gateway listening on %s:%d", config["listen.host"], self.port)

    def _account_session(self, client: RestClient, creds: AccountCredentials) -> AccountSession:
        cache_dir = self.config["token.cache_dir"]

        async def authenticate() -> str:
            return await client.authenticate(creds.api_key, creds.api_secret)

        tokens = TokenManager(
            creds.name,
            creds.api_key,
            authenticate,
            refresh_margin_s=self.config["token.refresh_margin_s"],
            cache_dir=Path(cache_dir) if cache_dir else None,
        )
        return AccountSession(creds.name, creds.api_key, creds.api_secret, tokens)

    async def _start_sandbox(self, config: GatewayConfig) -> GatewayConfig:
        from gateway.sandbox import Sandbox, SandboxConfig

        sandbox = Sandbox(
            SandboxConfig(market=config["sandbox.market"], seed=config["sandbox.seed"])
        )
        await sandbox.start("127.0.0.1", 0)
        self._stack.push_async_callback(sandbox.stop)
        self.sandbox = sandbox
        log.info("embedded ALP sandbox at %s", sandbox.rest_url)
        accounts = dict(config.accounts) or {
            name: AccountCredentials(name, key, Secret(secret))
            for name, (key, secret) in SANDBOX_ACCOUNTS.items()
        }
        updated = config.with_overrides(
            upstream__rest_url=sandbox.rest_url,
            upstream__ws_url=sandbox.ws_url,
        ).with_accounts(accounts)
        if not config["accounts.default"] or config["accounts.default"] not in accounts:
            updated = updated.with_overrides(accounts__default="demo")
        return updated

    async def _close_feeds(self) -> None:
        for feed in self.private_feeds.values():
            await feed.close()
        if self.public_feed is not None:
            await self.public_feed.close()

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._health is not None:
            await set_serving(self._health, False)
        if self.streams is not None:
            self.streams.end_all(Draining())
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        await self._stack.aclose()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def run_until_signalled(config: GatewayConfig) -> None:
    """`alp-gateway serve`: run until SIGTERM/SIGINT, then stop gracefully."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Gateway(config) as gateway:
        print(f"alp-gateway serving gRPC on {config['listen.host']}:{gateway.port}", flush=True)
        if gateway.sandbox is not None:
            print(f"  upstream: embedded sandbox {gateway.sandbox.rest_url}", flush=True)
        await stop.wait()
        log.info("signal received: draining")
