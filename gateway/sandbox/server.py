"""The sandbox as a running aiohttp app: REST, WebSocket, admin endpoints, faults, embedding API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

from gateway.sandbox.auth import Authority
from gateway.sandbox.config import FEE_ACCOUNT_ID, SandboxConfig
from gateway.sandbox.engine.exchange import Exchange
from gateway.sandbox.engine.records import ExchangeError
from gateway.sandbox.engine.specs import default_currencies, default_pairs
from gateway.sandbox.faults import FaultSettings, RateLimiter, SandboxStats
from gateway.sandbox.market import MarketActivity
from gateway.sandbox.rest import RestApi
from gateway.sandbox.wire import Reject, error, reply
from gateway.sandbox.ws import WsHub

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sandbox:
    """An ALP-compatible exchange on 127.0.0.1 (or any host), embeddable in tests and the gateway."""

    def __init__(self, config: SandboxConfig | None = None, clock: Callable[[], float] = time.time):
        self.config = config or SandboxConfig()
        self.clock = clock
        self.faults = FaultSettings()
        self.stats = SandboxStats()
        self.exchange = Exchange(
            default_pairs(), default_currencies(), fee_account_id=FEE_ACCOUNT_ID
        )
        now = clock()
        for account in self.config.accounts:
            self.exchange.open_account(
                account.account_id,
                email=account.email,
                name=account.name,
                parent_id=account.parent_id,
            )
            for currency, amount in account.funding:
                self.exchange.credit(account.account_id, currency, amount, now)
        self.authority = Authority(self.config.accounts, self.config.jwt_key, self._lifetime, clock)
        self.ws = WsHub(self.config, self.exchange, self.authority, self.stats, clock)
        self.market = MarketActivity(self.config, self.exchange, clock, self._publish)
        self._limiter = RateLimiter()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.host = "127.0.0.1"

    def _lifetime(self) -> float:
        override = self.faults.token_lifetime_s
        return override if override is not None else self.config.token_lifetime_s

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/v3"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    def _publish(self) -> None:
        self.ws.publish(self.exchange.drain_events())

    def publish_now(self) -> None:
        """Flush pending events, depth snapshots and tickers to WebSocket subscribers now."""
        self._publish()
        self.ws.flush_depth()
        self.ws.flush_tickers()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._faults], client_max_size=64 * 1024)
        api = RestApi(
            self.exchange,
            self.authority,
            self.clock,
            self._publish,
            self._count_auth,
            order_extra_fields=self.config.extensions.order_extra_fields,
            cancel_by_ids_empty_202=self.config.extensions.cancel_by_ids_empty_202,
        )
        app.add_routes(api.routes())
        app.add_routes(
            [
                web.get("/ws", self.ws.handle),
                web.get("/admin/faults", self._get_faults),
                web.put("/admin/faults", self._put_faults),
                web.post("/admin/drop-ws", self._drop_ws),
                web.post("/admin/market/step", self._market_step),
                web.post("/admin/inject-ws", self._inject_ws),
                web.put("/admin/keys/{api_key}", self._put_key_state),
            ]
        )
        return app

    def _count_auth(self) -> None:
        self.stats.auth_calls += 1

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Reject as exc:
            return error(exc.status, exc.code, exc.message)
        except ExchangeError as exc:
            return error(exc.http_status, exc.code, exc.message)
        except web.HTTPMethodNotAllowed:
            return error(405, "METHOD_NOT_ALLOWED", "method not allowed")
        except web.HTTPNotFound:
            # live ALP answers an unknown path like a private call without a token (API-NOTES)
            return error(401, "UNAUTHORIZED", "missing or invalid Authorization header")
        except web.HTTPRequestEntityTooLarge:
            return error(400, "1002", "body too large")
        except web.HTTPException:
            raise
        except ConnectionResetError:
            return web.Response(status=499)  # the client left before its body arrived
        except Exception:
            log.exception("sandbox bug while handling %s %s", request.method, request.path)
            return error(500, "3004", "internal error")

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith("/api/v3"):
            return await handler(request)
        self.stats.rest_requests[(request.method, path)] += 1
        self.stats.request_log.append((time.monotonic(), request.method, path))
        if not _accepts_json(request.headers.get("Accept")):
            return error(406, "NOT_ACCEPTABLE", "only application/json is served")
        faults = self.faults
        delayed = faults.delays(path)
        if faults.delay_s and delayed:
            # a request ALP holds was received whole: it is applied even if the client gives up
            await request.read()
            await asyncio.sleep(faults.delay_s)
        failing = faults.should_fail(path) or (
            faults.reset_after_apply and path.startswith("/api/v3" + faults.error_path_prefix)
        )
        if failing and not (faults.error_after_apply or faults.reset_after_apply):
            return self._injected_error()
        if faults.rate_limit_per_s and request.headers.get("Authorization"):
            key = request.headers["Authorization"][-16:]
            if not self._limiter.allow(key, faults.rate_limit_per_s, time.monotonic()):
                self.stats.rate_limited += 1
                return error(429, "TOO_MANY_REQUESTS", "rate limit exceeded", {"Retry-After": "1"})
        response = await handler(request)
        if faults.delay_after_s and delayed:
            await asyncio.sleep(faults.delay_after_s)
        if failing and faults.reset_after_apply:
            self.stats.injected_errors += 1
            if request.transport is not None:
                request.transport.abort()  # applied, and the answer never leaves
            return response
        if failing:
            return self._injected_error()
        return response

    def _injected_error(self) -> web.Response:
        self.stats.injected_errors += 1
        status = self.faults.error_status
        headers = {"Retry-After": "1"} if status in (429, 503) else None
        codes = {
            429: "TOO_MANY_REQUESTS",
            502: "BAD_GATEWAY",
            503: "3003",
            504: "GATEWAY_TIMEOUT",
        }
        return error(status, codes.get(status, "3004"), "injected fault", headers)

    async def _get_faults(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.faults.public())  # admin, not an ALP shape

    async def _put_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            changes = json.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("body must be an object")
            self.faults.update(changes)
        except (ValueError, TypeError) as exc:
            return error(400, "VALIDATION_ERROR", str(exc))
        return web.json_response(self.faults.public())

    async def _put_key_state(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
            state = body.get("state") if isinstance(body, dict) else None
            self.set_key_state(request.match_info["api_key"], str(state))
        except (ValueError, TypeError) as exc:
            return error(400, "VALIDATION_ERROR", str(exc))
        return web.json_response({"state": state})

    def set_key_state(self, api_key: str, state: str) -> None:
        """`active`, `deleted`, `inactive` or `ip_not_allowed` (see gateway.sandbox.auth)."""
        self.authority.set_key_state(api_key, state)

    async def _drop_ws(self, request: web.Request) -> web.StreamResponse:
        return reply({"dropped": await self.drop_ws_connections()})

    async def _market_step(self, request: web.Request) -> web.StreamResponse:
        count = int(request.query.get("n", "1"))
        self.market.step(max(1, min(count, 10000)))
        self.publish_now()
        return reply({"steps": self.market.steps})

    async def _inject_ws(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        return reply(
            {"delivered": await self.inject_ws_frame(body, topic=request.query.get("topic"))}
        )

    def revoke_tokens(self) -> None:
        """Refuse every token issued so far (tests of re-authentication on 401)."""
        self.authority.revoke_all()

    async def drop_ws_connections(self) -> int:
        return await self.ws.drop_all()

    async def inject_ws_frame(self, raw: str, *, topic: str | None = None) -> int:
        return self.ws.inject(raw, topic)

    async def _periodic(self, interval: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                action()
            except Exception:
                log.exception("sandbox periodic task failed")

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._periodic(self.config.depth_interval_s, self.ws.flush_depth)),
            loop.create_task(self._periodic(self.config.ticker_interval_s, self.ws.flush_tickers)),
        ]
        if self.config.market:
            self.market.start()

    async def stop(self) -> None:
        await self.market.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.ws.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _accepts_json(accept: str | None) -> bool:
    """406 Not Acceptable unless the Accept header (if any) admits JSON."""
    if not accept:
        return True
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", "application/json") or media.endswith("+json"):
            return True
    return False


async def serve(config: SandboxConfig, host: str, port: int) -> None:
    """`alp-gateway sandbox`: run until cancelled, printing where it listens and how to log in."""
    sandbox = Sandbox(config)
    await sandbox.start(host, port)
    print(f"ALP sandbox REST: {sandbox.rest_url}", flush=True)
    print(f"ALP sandbox WS:   {sandbox.ws_url}", flush=True)
    for account in config.accounts:
        print(
            f"  account {account.account_id} ({account.name}): api key {account.api_key}, "
            f"api secret {account.api_secret}",
            flush=True,
        )
    try:
        await asyncio.Event().wait()
    finally:
        await sandbox.stop()
