"""Composition root: builds the gateway from its config, starts it in dependency order, stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc

from gateway.audit import AuditLog
from gateway.config import AccountCredentials, GatewayConfig, startup_checks
from gateway.core.callers import Caller, CallerRegistry
from gateway.core.token_policy import Secret
from gateway.errors import (
    ConfigError,
    Draining,
)
from gateway.exchange.limiter import RateLimiter
from gateway.exchange.order_desk import DeskSettings, OrderDesk
from gateway.exchange.rest_client import AccountSession, RestClient, RetryPolicy
from gateway.exchange.token_manager import TokenManager
from gateway.exchange.upstream import Upstream
from gateway.exchange.ws_connection import WsSettings
from gateway.exchange.ws_private import PrivateFeed
from gateway.exchange.ws_public import PublicFeed
from gateway.feeds import Feeds
from gateway.health_monitor import HealthMonitor
from gateway.metrics import GatewayMetrics, HealthCollector, StateCollector
from gateway.rpc.caller_auth import CallerGate
from gateway.rpc.server import build_server, health_statuses
from gateway.rpc.stream import StreamServicer
from gateway.rpc.stream_hub import StreamHub
from gateway.status import (
    AccountState,
    FleetState,
    GatewayState,
    Health,
    LoopState,
)
from gateway.supervisor import Supervisor

if TYPE_CHECKING:
    from gateway.cluster.fleet import Fleet
    from gateway.cluster.topic_share import SharedFeed

log = logging.getLogger(__name__)

# Credentials of the embedded sandbox's built-in accounts (public demo values, not secrets).
SANDBOX_ACCOUNTS = {
    "demo": ("demo-key", "demo-secret"),
    "desk-b": ("desk-b-key", "desk-b-secret"),
}


class Gateway:
    """The running gateway: optional embedded sandbox, upstream session and feeds, gRPC server."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.port = 0
        self.metrics_port = 0
        self.sandbox: Any = None
        self.upstream: Upstream | None = None
        self.feeds: Feeds | None = None
        self.streams: StreamServicer | None = None
        self.hub: StreamHub | None = None
        self.audit: AuditLog | None = None
        self.desk: OrderDesk | None = None
        self.metrics = GatewayMetrics()
        self.monitor: HealthMonitor | None = None
        self._stack = AsyncExitStack()
        self._server: Any = None
        self.supervisor = Supervisor("gateway")
        self.fleet: Fleet | None = None

    @property
    def public_feed(self) -> PublicFeed | None:
        return self.feeds.public if self.feeds else None

    @property
    def private_feeds(self) -> dict[str, PrivateFeed]:
        return self.feeds.private if self.feeds else {}

    @property
    def shared_feed(self) -> SharedFeed | None:
        return self.feeds.shared if self.feeds else None

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

    # -- start ----------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        config = self.config
        self._stack.push_async_callback(self.supervisor.close)  # a failed start ends every loop
        if config.settings.sandbox.enabled:
            config = self.config = await self._start_sandbox(config)
        startup_checks(config)
        registry = self._caller_registry(config)
        if not config.accounts:
            log.warning(
                "no ALP accounts configured: only MarketDataService and public streams work"
            )
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=config.settings.upstream.max_connections,
                keepalive_timeout=30,
                ttl_dns_cache=300,
            ),
            headers={"User-Agent": "alp-grpc-gateway/0.1"},
        )
        self._stack.push_async_callback(session.close)
        self.fleet = self._open_fleet(config)
        client = RestClient(
            config.settings.upstream.rest_url,
            session,
            retry=RetryPolicy(
                attempts=config.settings.upstream.retry_attempts,
                base_s=config.settings.upstream.retry_base_s,
                cap_s=config.settings.upstream.retry_cap_s,
            ),
            default_timeout_s=config.settings.upstream.timeout_s,
            limiter=RateLimiter(
                public_rps=config.settings.upstream.public_rps,
                private_rps=config.settings.upstream.private_rps,
                trading_reserve=config.settings.upstream.trading_reserve,
                margin_s=config.settings.upstream.rate_margin_s,
                shared=self.fleet.budget if self.fleet else None,
            ),
            observer=self.metrics.observe_upstream if config.settings.metrics.enabled else None,
        )
        accounts = {name: self._account(client, creds) for name, creds in config.accounts.items()}
        self.upstream = Upstream(
            client,
            accounts,
            config.default_account,
            public_cache_ttl_s=config.settings.upstream.public_cache_ttl_s,
            pairs_ttl_s=config.settings.upstream.pairs_ttl_s,
        )
        self._start_streaming(config, session)
        self.desk = OrderDesk(
            self.upstream,
            DeskSettings(
                wallet_spelling=config.settings.upstream.wallet_spelling,
                settle_s=config.settings.trading.settle_s,
                clock_skew_s=config.settings.trading.clock_skew_s,
                idempotency_window_s=config.settings.trading.idempotency_window_s,
            ),
            intents=self.fleet.intents if self.fleet else None,
        )
        if config.settings.audit.path:
            self.audit = AuditLog(Path(config.settings.audit.path))
            self.audit.check_writable()
        else:
            log.warning("audit.path is empty: trading calls are NOT audited")
        server, health = build_server(
            self.upstream,
            streams=self.streams,  # type: ignore[arg-type]  # set by _start_streaming
            deadline_margin_s=config.settings.upstream.deadline_margin_s,
            default_timeout_s=config.settings.upstream.timeout_s,
            desk=self.desk,
            audit=self.audit,
            status=self.state,
            gate=CallerGate(registry, config.default_account),
            observer=self.metrics if config.settings.metrics.enabled else None,
            reuse_port=config.settings.listen.reuse_port,
        )
        monitor = self.monitor = HealthMonitor(
            self.upstream,
            tuple(config.accounts),
            interval_s=config.settings.health.interval_s,
            failing=self.supervisor.failing,
        )
        await monitor.publish_to(health)  # NOT_SERVING until checked
        self.port = self._bind(server, config)
        await server.start()
        self._server = server
        self._stack.push_async_callback(self._abort_server)  # a failed start stops it too
        if config.settings.health.http_port:
            runner = await monitor.serve_http(
                config.settings.listen.host, config.settings.health.http_port
            )
            self._stack.push_async_callback(runner.cleanup)
        self.supervisor.start("health", monitor.run)
        if config.settings.metrics.enabled:
            self._start_metrics(config)
        # the first check decides SERVING; start-up waits for it, but not for a silent ALP
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(monitor.budget_s + 1.0):
                await monitor.first_check.wait()
        log.info("gateway listening on %s:%d", config.settings.listen.host, self.port)

    def _caller_registry(self, config: GatewayConfig) -> CallerRegistry | None:
        if config.settings.callers.dev_mode:
            log.warning(
                "!!! DEVELOPMENT MODE: caller authentication is OFF; every caller may use every "
                "RPC and every ALP account. Never run this in production. !!!"
            )
            return None
        if not config.callers:
            raise ConfigError(
                "callers",
                "no callers configured: add [callers.NAME] tables, or set callers.dev_mode = true "
                "for development",
            )
        by_token = {
            c.token_sha256: Caller(c.name, c.scopes, c.accounts, c.rate_per_s)
            for c in config.callers.values()
            if c.token_sha256
        }
        by_subject = {
            c.cert_subject: Caller(c.name, c.scopes, c.accounts, c.rate_per_s)
            for c in config.callers.values()
            if c.cert_subject
        }
        return CallerRegistry(by_token, by_subject)

    def _bind(self, server: Any, config: GatewayConfig) -> int:
        address = f"{config.settings.listen.host}:{config.settings.listen.port}"
        if not config.settings.tls.cert_file:
            return int(server.add_insecure_port(address))
        ca_file = config.settings.tls.client_ca_file
        credentials = grpc.ssl_server_credentials(
            [
                (
                    Path(config.settings.tls.key_file).read_bytes(),
                    Path(config.settings.tls.cert_file).read_bytes(),
                )
            ],
            root_certificates=Path(ca_file).read_bytes() if ca_file else None,
            require_client_auth=bool(ca_file),
        )
        return int(server.add_secure_port(address, credentials))

    def _open_fleet(self, config: GatewayConfig) -> Fleet | None:
        """With `cluster.redis_url`: this process becomes a member of the fleet in that Redis."""
        url = config.settings.cluster.redis_url
        if not url:
            return None
        from gateway.cluster.fleet import Fleet

        fleet = Fleet.open(
            url,
            idempotency_window_s=config.settings.trading.idempotency_window_s,
            order_lease_s=config.settings.upstream.timeout_s + 5.0,
        )
        self._stack.push_async_callback(fleet.close)
        self.supervisor.start("fleet:members", fleet.members.run)
        log.info("fleet member %s", fleet.members.member_id)
        return fleet

    def _account(self, client: RestClient, creds: AccountCredentials) -> AccountSession:
        cache_dir = self.config.settings.token.cache_dir

        async def authenticate() -> str:
            return await client.authenticate(creds.api_key, creds.api_secret)

        shared = None
        if self.fleet is not None:
            lease = max(10.0, self.config.settings.upstream.timeout_s)
            shared = self.fleet.shared_tokens(
                creds.name, creds.api_key, creds.api_secret, lease_s=lease
            )
        tokens = TokenManager(
            creds.name,
            creds.api_key,
            authenticate,
            refresh_margin_s=self.config.settings.token.refresh_margin_s,
            cache_dir=Path(cache_dir) if cache_dir else None,
            shared=shared,
        )
        return AccountSession(creds.name, creds.api_key, creds.api_secret, tokens)

    def _start_streaming(self, config: GatewayConfig, session: aiohttp.ClientSession) -> None:
        upstream = self.upstream
        assert upstream is not None
        ws = config.settings.ws
        self.feeds = Feeds(
            session,
            WsSettings(
                url=config.settings.upstream.ws_url,
                stale_after_s=ws.stale_after_s,
                reconnect_base_s=ws.reconnect_base_s,
                reconnect_cap_s=ws.reconnect_cap_s,
                max_frame_bytes=ws.max_frame_bytes,
                connect_timeout_s=ws.connect_timeout_s,
            ),
            lambda account: upstream.account(account).tokens,
            supervisor=self.supervisor,
            max_topics_per_connection=ws.max_topics_per_connection,
            linger_s=ws.linger_s,
            auth_grace_s=ws.auth_grace_s,
            fleet=self.fleet,
            accounts=tuple(upstream.accounts),
            topic_lease_s=config.settings.cluster.topic_lease_s,
        )
        self._stack.push_async_callback(self.feeds.close)
        self.hub = StreamHub(self.feeds.topics, self.feeds.account)
        self.streams = StreamServicer(
            self.hub, self.feeds.topics, upstream, queue_limit=config.settings.stream.queue_limit
        )

    def _start_metrics(self, config: GatewayConfig) -> None:
        from prometheus_client import start_http_server

        self.metrics.registry.register(StateCollector(lambda: self.state().metrics()))
        self.metrics.registry.register(HealthCollector(self.state))
        metrics = config.settings.metrics
        try:
            server, thread = start_http_server(
                metrics.port, addr=metrics.host, registry=self.metrics.registry
            )
        except OSError as exc:
            raise ConfigError(
                "metrics.port", f"cannot listen on {metrics.host}:{metrics.port}: {exc.strerror}"
            ) from exc
        self.metrics_port = server.server_port

        def stop_metrics() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        self._stack.callback(stop_metrics)

    async def _start_sandbox(self, config: GatewayConfig) -> GatewayConfig:
        from gateway.sandbox import Sandbox, SandboxConfig

        sandbox = Sandbox(
            SandboxConfig(market=config.settings.sandbox.market, seed=config.settings.sandbox.seed)
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
            upstream__rest_url=sandbox.rest_url, upstream__ws_url=sandbox.ws_url
        ).with_accounts(accounts)
        if not config.settings.accounts.default or config.settings.accounts.default not in accounts:
            updated = updated.with_overrides(accounts__default="demo")
        return updated

    # -- health ---------------------------------------------------------------------------------
    @property
    def health(self) -> Health:
        if self.monitor is None:
            return Health(accounts=tuple(self.config.accounts))
        return self.monitor.verdict

    @property
    def serving(self) -> bool:
        return self.health.serving

    @property
    def health_http_port(self) -> int:
        return self.monitor.http_port if self.monitor else 0

    async def _abort_server(self) -> None:
        """Only when start-up failed after binding: stop at once (stop() has cleared _server)."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(0)

    # -- status ---------------------------------------------------------------------------------
    def state(self) -> GatewayState:
        upstream, feeds, streams = self.upstream, self.feeds, self.streams
        connections = feeds.connection_states() if feeds else []
        accounts: list[AccountState] = []
        if upstream is not None:
            for name, session in upstream.accounts.items():
                feed_of = feeds.private.get(name) if feeds else None
                accounts.append(
                    AccountState(
                        name,
                        session.tokens.expires_at,
                        session.tokens.refreshes,
                        feed_of is not None and feed_of.open,
                        self.health.refused.get(name, ""),
                    )
                )
        deliveries = streams.deliveries() if streams is not None else ()
        drops = self.hub.stats if self.hub is not None else None
        return GatewayState(
            serving=self.serving,
            connections=tuple(connections),
            streams=streams.active_streams if streams else 0,
            subscribers=self.hub.consumer_count() if self.hub else 0,
            accounts=tuple(accounts),
            rate_limit_headroom=upstream.client.limiter.headroom() if upstream else {},
            cache_hits=upstream.cache_stats.hits if upstream else 0,
            cache_misses=upstream.cache_stats.misses if upstream else 0,
            upstream_calls=upstream.client.stats.calls if upstream else 0,
            upstream_retries=upstream.client.stats.retries if upstream else 0,
            ws_frames_rejected=feeds.frames_rejected() if feeds else 0,
            ws_reconnects=sum(c.disconnects for c in connections),
            queue_depth=sum(len(d) for d in deliveries),
            conflations=sum(d.conflated for d in deliveries)
            + (streams.ended_conflations if streams else 0),
            evictions=streams.evictions if streams else 0,
            limiter_waits=upstream.client.limiter.waits if upstream else 0,
            token_refreshes=sum(a.token_refreshes for a in accounts),
            events_unencodable=drops.unencodable if drops else 0,
            events_oversize=drops.oversize if drops else 0,
            services=health_statuses(self.health),
            loops=tuple(
                LoopState(loop.name, loop.state.value, loop.restarts, loop.last_error)
                for loop in self.supervisor.status()
            ),
            fleet=self._fleet_state(),
        )

    def _fleet_state(self) -> FleetState:
        fleet = self.fleet
        if fleet is None:
            return FleetState()
        tokens_down = any(t.degraded for t in fleet.tokens.values())
        topics = self.shared_feed
        return FleetState(
            True,
            fleet.members.member_id,
            fleet.members.live,
            fleet.budget.degraded
            or tokens_down
            or fleet.intents_degraded()
            or (topics is not None and topics.degraded),
            topics.held() if topics else (),
            len(topics.followed()) if topics else 0,
            topics.leader if topics else "",
        )

    # -- stop -----------------------------------------------------------------------------------
    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: NOT_SERVING, streams end UNAVAILABLE, in-flight calls get `grace_s`, then close."""
        grace = self.config.settings.drain.grace_s if grace_s is None else grace_s
        await self.supervisor.stop("health")
        if self.monitor is not None:
            await self.monitor.draining()
        if self.streams is not None:
            self.streams.end_all(Draining())
        if self._server is not None:
            server, self._server = self._server, None
            stopping = asyncio.get_running_loop().create_task(server.stop(grace))
            if self.desk is not None:
                # order calls finish or reconcile within the grace; what is still running near
                # its end is cut and answered ORDER_OUTCOME_UNKNOWN (and audited) before gRPC
                # would cancel it with a bare "Cancelling all calls"
                self.desk.begin_drain()
                cut_margin = min(1.0, grace * 0.2)
                if not await self.desk.wait_idle(grace - cut_margin):
                    log.warning("drain: cutting %d order calls", self.desk.in_flight)
                    self.desk.cut()
                    await self.desk.wait_idle(cut_margin * 0.8)
            await stopping
        await self._stack.aclose()


async def run_until_signalled(config: GatewayConfig) -> None:
    """`alp-gateway serve`: run until SIGTERM/SIGINT, then drain and exit."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(config)
    await gateway.start()
    try:
        print(
            f"alp-gateway serving gRPC on {gateway.config.settings.listen.host}:{gateway.port}",
            flush=True,
        )
        if gateway.sandbox is not None:
            print(f"  upstream: embedded sandbox {gateway.sandbox.rest_url}", flush=True)
        if gateway.metrics_port:
            print(
                f"  metrics: http://{config.settings.metrics.host}:{gateway.metrics_port}/metrics",
                flush=True,
            )
        await stop.wait()
        log.info("signal received: draining")
    finally:
        await gateway.stop()
