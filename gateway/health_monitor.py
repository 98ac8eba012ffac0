"""HealthMonitor: decides SERVING / NOT_SERVING from ALP's answers, publishes it, serves probes.

grpc.health.v1 statuses (per service), plaintext `/healthz` and `/readyz` for orchestrators, and
one log line per change (never a secret). A loop that cannot recover (the supervisor's `failing`)
also turns the verdict NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from gateway.core import rest_requests
from gateway.errors import AuthFailed, GatewayError, RateLimited, UpstreamHttpError
from gateway.exchange.rest_client import AccountSession
from gateway.exchange.upstream import Upstream
from gateway.rpc.server import health_statuses, set_health
from gateway.status import Health

log = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(
        self,
        upstream: Upstream,
        accounts: tuple[str, ...],
        *,
        interval_s: float,
        failing: Callable[[], Iterable[str]],
    ) -> None:
        self._upstream = upstream
        self._interval_s = interval_s
        self._failing = failing
        self.verdict = Health(accounts=accounts)  # NOT_SERVING until the first check
        self.first_check = asyncio.Event()
        self._services: Any = None  # the grpc.health.v1 servicer, once the server exists
        self.http_port = 0

    @property
    def budget_s(self) -> float:
        """How long one check may take."""
        return min(5.0, self._interval_s)

    async def publish_to(self, services: Any) -> None:
        """Serve the verdict through `services` (grpc.health.v1) from now on."""
        self._services = services
        await set_health(services, health_statuses(self.verdict))

    async def check(self, *, accounts: bool = True) -> Health:
        """One upstream check: ALP answers GET /time (a 429 is an answer), and with `accounts`
        each account's key is accepted by one private call (GET /accounts/accounts, read lane), so
        a key ALP stopped accepting is seen even while its token is still held."""
        budget = self.budget_s
        deadline = time.monotonic() + budget
        reachable, reason = True, ""
        try:
            async with asyncio.timeout(budget):
                await self._upstream.client.call(rest_requests.server_time(), deadline=deadline)
        except TimeoutError:
            reachable, reason = False, "ALP did not answer"
            log.warning("health check: GET /time: no answer within %.1fs", budget)
        except GatewayError as exc:
            if not _rate_limited(exc):
                reachable, reason = False, "ALP unreachable"
                log.warning("health check: GET /time: %s: %s", type(exc).__name__, exc)
        refusals: dict[str, str | None] = {}
        if reachable and accounts:
            sessions = list(self._upstream.accounts.values())
            answers = await asyncio.gather(*(self._check_account(s, deadline) for s in sessions))
            refusals = {s.name: answer for s, answer in zip(sessions, answers, strict=True)}
        return self.verdict.checked_as(reachable, reason, refusals)

    async def _check_account(self, session: AccountSession, deadline: float) -> str | None:
        """ALP's refusal of the account's key, "" when accepted, None when it cannot tell."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._upstream.client.call(
                    rest_requests.accounts(), account=session, deadline=deadline
                )
        except (AuthFailed, UpstreamHttpError) as exc:
            if isinstance(exc, AuthFailed) or exc.http_status in (401, 403):
                return f"HTTP {exc.http_status} {exc.code}: {exc.message[:200]}"
            return None  # 429 or an ALP fault: says nothing about the key
        except (GatewayError, TimeoutError):
            return None
        return ""

    async def adopt(self, verdict: Health) -> None:
        """Adopt a verdict: health services, and one log line per change (never a secret)."""
        old, self.verdict = self.verdict, verdict
        for account in verdict.accounts:
            was, now = old.refused.get(account), verdict.refused.get(account)
            if now and now != was:
                log.warning("health: ALP refuses account %s: %s", account, now)
            elif was and not now:
                log.warning("health: ALP accepts account %s again", account)
        if (verdict.serving, verdict.why()) != (old.serving, old.why()):
            log.warning(
                "health: %s", "SERVING" if verdict.serving else f"NOT_SERVING ({verdict.why()})"
            )
        if verdict.serving and verdict.accounts_serving != old.accounts_serving:
            log.warning(
                "health: account services %s",
                "SERVING" if verdict.accounts_serving else "NOT_SERVING (no account accepted)",
            )
        if self._services is not None:
            await set_health(self._services, health_statuses(verdict))

    async def draining(self) -> None:
        if self._services is not None:
            await self.adopt(replace(self.verdict, draining=True))

    async def run(self) -> None:
        """Checks now and every interval; an unexpected error ends one check, not this loop.

        The first check (start-up waits for it) only asks whether ALP answers: tokens stay lazy,
        so start-up makes no POST /auth; every later check also asks about each account."""
        first = True
        while True:
            try:
                verdict = await self.check(accounts=not first)
                failing = tuple(self._failing())
                if failing != verdict.failing_loops:
                    verdict = replace(verdict, failing_loops=failing)
                await self.adopt(verdict)
            except Exception:
                log.exception("health check failed unexpectedly; the last verdict stands")
            first = False
            self.first_check.set()
            await asyncio.sleep(self._interval_s)

    async def serve_http(self, host: str, port: int) -> Any:
        """Plaintext /healthz (process alive) and /readyz (200 only while SERVING), which TLS
        and mTLS on the gRPC port do not block. Returns the runner to clean up. A port that
        cannot be bound is logged, not fatal: gRPC keeps serving and readiness probes fail, so
        no traffic is sent to this replica."""
        from aiohttp import web

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"status": "alive"})

        async def readyz(request: web.Request) -> web.Response:
            verdict = self.verdict
            body = {
                "status": "SERVING" if verdict.serving else "NOT_SERVING",
                "reason": verdict.why(),
            }
            return web.json_response(body, status=200 if verdict.serving else 503)

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            log.error(
                "health: cannot serve HTTP /healthz and /readyz on %s:%d: %s (set health.http_port)",
                host,
                port,
                (exc.strerror or str(exc)).lower(),
            )
            return runner
        self.http_port = port
        return runner


def _rate_limited(exc: GatewayError) -> bool:
    """ALP answered 429, or our limiter paused after one: ALP is there, only busy."""
    return isinstance(exc, RateLimited) or (
        isinstance(exc, UpstreamHttpError) and exc.http_status == 429
    )
