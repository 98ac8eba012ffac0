"""RestClient: the one choke point for ALP REST calls — sign, attach the token, retry safely, map."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.core.backoff import backoff_delay
from gateway.core.json_codec import loads_exact
from gateway.core.rate_limit import Lane
from gateway.core.rest_parsing import parse_error_body
from gateway.core.rest_requests import RestRequest
from gateway.core.rest_requests import auth as auth_request
from gateway.core.signing import sign
from gateway.core.token_policy import Secret
from gateway.errors import (
    AuthFailed,
    RateLimited,
    UpstreamError,
    UpstreamHttpError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.exchange.limiter import RateLimiter
from gateway.exchange.token_manager import TokenManager

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_s: float = 0.05
    cap_s: float = 1.0


@dataclass
class UpstreamStats:
    """Counters for metrics and tests; plain ints, read without locking."""

    calls: int = 0
    retries: int = 0
    auth_calls: int = 0
    reauth_on_401: int = 0
    last_status: int = 0
    last_ok_at: float = 0.0
    last_failure_at: float = 0.0


class AccountSession:
    """What a private call needs: the account's secret (for X-SIGN) and its token manager."""

    def __init__(self, name: str, api_key: str, api_secret: Secret, tokens: TokenManager) -> None:
        self.name = name
        self.api_key = api_key
        self.api_secret = api_secret
        self.tokens = tokens

    def __repr__(self) -> str:
        return f"AccountSession(name={self.name!r})"


Observer = Callable[[str, str, int, float], None]


class RestClient:
    """Sends `RestRequest`s to ALP over one pooled keep-alive session.

    The body bytes of a request are produced once by `gateway.core.rest_requests`; they are signed
    and sent as they are. Private calls get `Authorization: Bearer`; a 401 re-authenticates once and
    retries once. Idempotent calls retry on connection errors and 5xx with jittered backoff, inside
    the deadline. Every failure leaves as a `gateway.errors.UpstreamError`.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy = RetryPolicy(),
        default_timeout_s: float = 10.0,
        limiter: RateLimiter | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._session = session
        self._retry = retry
        self._default_timeout = default_timeout_s
        self._limiter = limiter or RateLimiter(public_rps=0, private_rps=0)
        self._observer = observer
        self._clock = clock
        self._rand = rand
        self.stats = UpstreamStats()

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def authenticate(self, api_key: str, api_secret: Secret) -> str:
        """POST /auth; returns the JWT. Refusals raise AuthFailed (no retry: a wrong key stays wrong)."""
        request = auth_request(api_key, api_secret.reveal())
        self.stats.auth_calls += 1
        try:
            deadline = self._clock() + self._default_timeout
            payload = await self._send(request, None, deadline, "", signing_secret=api_secret)
        except UpstreamHttpError as exc:
            if exc.http_status in (400, 401, 403, 404, 422):
                raise AuthFailed(exc.http_status, exc.code, exc.message) from exc
            raise
        if not isinstance(payload, str) or payload.count(".") != 2:
            raise UpstreamProtocolError("POST /auth did not answer a JWT string")
        return payload

    async def call(
        self,
        request: RestRequest,
        *,
        account: AccountSession | None = None,
        deadline: float | None = None,
        request_id: str = "",
        lane: Lane = Lane.READ,
    ) -> Any:
        """Perform `request`; returns the parsed JSON (Decimals for fractions) or None for no body."""
        if request.private and account is None:
            raise ValueError(f"{request.path} is private and needs an account")
        deadline = deadline if deadline is not None else self._clock() + self._default_timeout
        pool = account.name if request.private and account else None
        attempts = self._retry.attempts if request.idempotent else 1
        reauthenticated = False
        attempt = 0
        failed: UpstreamError | None = None
        while True:
            token = ""
            if account is not None and request.private:
                # the token first: a slot taken while /auth is slow would be spent long before
                # the send, and the held sends would reach ALP as one burst when it answers
                token = await self._token(request, account, deadline)
            try:  # every send takes a slot, retries and the re-send after a 401 too
                await self._limiter.acquire(pool, deadline, lane)
            except RateLimited:
                if failed is None:
                    raise
                raise failed from None  # no slot left in time for a retry: that failure stands
            try:
                return await self._send(request, account, deadline, request_id, token=token)
            except UpstreamHttpError as exc:
                failed = exc
                if exc.http_status == 429:
                    self._limiter.pause(
                        pool, exc.retry_after if exc.retry_after is not None else 1.0
                    )
                if exc.http_status == 401 and account is not None and not reauthenticated:
                    reauthenticated = True
                    self.stats.reauth_on_401 += 1
                    log.info(
                        "ALP answered 401 for account %s; re-authenticating once", account.name
                    )
                    continue
                if exc.http_status not in RETRYABLE_STATUSES or attempt + 1 >= attempts:
                    raise
                delay = self._retry_delay(attempt, exc.retry_after)
            except UpstreamUnavailable as exc:
                failed = exc
                if attempt + 1 >= attempts:
                    raise
                delay = self._retry_delay(attempt, None)
            if self._clock() + delay >= deadline:
                raise UpstreamTimeout(f"{request.method} {request.path}: no time left to retry")
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)

    async def _token(self, request: RestRequest, account: AccountSession, deadline: float) -> str:
        try:
            return await account.tokens.token(timeout_s=max(0.0, deadline - self._clock()))
        except TimeoutError:  # nothing was sent: a retry is safe
            raise UpstreamUnavailable(
                f"{request.method} {request.path}: no ALP token within the deadline"
            ) from None

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        delay = backoff_delay(
            attempt, base=self._retry.base_s, cap=self._retry.cap_s, rand=self._rand()
        )
        return max(delay, retry_after or 0.0)

    async def _send(
        self,
        request: RestRequest,
        account: AccountSession | None,
        deadline: float,
        request_id: str,
        *,
        token: str = "",
        signing_secret: Secret | None = None,
    ) -> Any:
        """One send; `token` is the bearer JWT of a private request (taken by `call`)."""
        headers: dict[str, str] = {"Accept": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        if request.signed:
            secret = account.api_secret if account is not None else signing_secret
            if secret is None:
                raise ValueError(f"{request.path} is signed and needs a secret")
            headers["X-SIGN"] = sign(request.body or b"", secret.reveal())
        if token:
            headers["Authorization"] = f"Bearer {token}"
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise UpstreamTimeout(f"{request.method} {request.path}: deadline passed")
        started = self._clock()
        status = 0
        try:
            async with self._session.request(
                request.method,
                self._base + request.path,
                params=list(request.query) or None,
                data=request.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=remaining),
                allow_redirects=False,
            ) as response:
                status = response.status
                body = await response.read()
                retry_after = response.headers.get("Retry-After")
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{request.method} {request.path}: timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(f"cannot connect to ALP: {exc.os_error}") from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamUnavailable(
                f"{request.method} {request.path}: connection lost ({type(exc).__name__})",
                maybe_sent=True,
            ) from exc
        finally:
            self.stats.calls += 1
            self.stats.last_status = status
            if self._observer is not None:
                self._observer(request.method, request.path, status, self._clock() - started)
        if 200 <= status < 300:
            self.stats.last_ok_at = time.time()
            return loads_exact(body) if body.strip() else None
        self.stats.last_failure_at = time.time()
        error = parse_error_body(status, body, retry_after)
        if status == 401 and account is not None and token:
            await account.tokens.invalidate(token)
        raise error

    async def close(self) -> None:
        await self._session.close()
