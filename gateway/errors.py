"""The gateway's one exception tree; every expected failure is one of these, carrying fields, not prose.

    GatewayError
    ├── ConfigError              a setting is missing or invalid          (start-up; names the setting)
    ├── ValidationError          caller input rejected before upstream    -> INVALID_ARGUMENT + BadRequest
    ├── CallerError              caller identity / permission / account
    │   ├── Unauthenticated      no or bad caller credentials             -> UNAUTHENTICATED
    │   ├── PermissionDenied     scope or account not granted             -> PERMISSION_DENIED
    │   └── UnknownAccount       x-alp-account names no configured account -> NOT_FOUND
    ├── UpstreamError            ALP could not do what was asked
    │   ├── UpstreamHttpError    ALP answered with an error status/body   -> mapped by table (rpc/status_map)
    │   ├── UpstreamUnavailable  connection refused / reset / DNS / closed -> UNAVAILABLE
    │   ├── UpstreamTimeout      no answer within the deadline            -> DEADLINE_EXCEEDED
    │   ├── UpstreamProtocolError ALP answered something we cannot parse  -> INTERNAL (logged)
    │   └── AuthFailed           /auth refused the configured key         -> UNAUTHENTICATED
    ├── OrderOutcomeUnknown      an order call failed ambiguously and ALP's lists could not decide
    │                                                                      -> FAILED_PRECONDITION
    ├── OrderNotPlaced           failed, and ALP verifiably holds no such order -> the cause's status
    ├── StreamError
    │   ├── SlowConsumer         a lossless stream overflowed its queue   -> RESOURCE_EXHAUSTED
    │   ├── Draining             the gateway is shutting down             -> UNAVAILABLE
    │   ├── TopicRefused         ALP refused a topic: unlisted pair       -> NOT_FOUND
    │   │                        or malformed topic                       -> INVALID_ARGUMENT
    │   └── PrivateLoginRefused  ALP keeps refusing the account's WS login -> UNAUTHENTICATED
    ├── RateLimited              the client-side limiter has no headroom  -> RESOURCE_EXHAUSTED
    ├── AuditUnavailable         the audit trail cannot be written        -> UNAVAILABLE (no trading)
    └── IdempotencyUnavailable   the fleet's intent store cannot be read  -> UNAVAILABLE (nothing sent)

Anything else reaching the RPC boundary is a bug: INTERNAL with a generic message, traceback logged.
"""

from __future__ import annotations

import hashlib
import re

_ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # what config accepts as an account name


def shown_account(text: str) -> str:
    """A caller-supplied `x-alp-account` as errors and logs may show it: itself when it could be
    an account name, else a short hash (a bearer token pasted there must never be echoed, and
    7 KB of it must not push the status past the client's header limit)."""
    if not text or _ACCOUNT_NAME.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class ValidationError(GatewayError):
    """One or more request fields are invalid; `violations` is [(field path, description)]."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.violations: list[tuple[str, str]] = [(field, description)]

    @property
    def field(self) -> str:
        return self.violations[0][0]

    @property
    def description(self) -> str:
        return self.violations[0][1]


class CallerError(GatewayError):
    pass


class Unauthenticated(CallerError):
    pass


class PermissionDenied(CallerError):
    def __init__(self, message: str, *, scope: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope


class UnknownAccount(CallerError):
    def __init__(self, account: str) -> None:
        self.account = shown_account(account)
        super().__init__(f"unknown ALP account {self.account!r}")


class UpstreamError(GatewayError):
    pass


class UpstreamHttpError(UpstreamError):
    """ALP answered `http_status` with an error body `{"code", "message"}` (either may be empty)."""

    def __init__(
        self,
        http_status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"ALP HTTP {http_status} {code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    """No usable answer from ALP. `maybe_sent`: the request may have reached ALP (ambiguous)."""

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class UpstreamTimeout(UpstreamError):
    """ALP did not answer in time; the request may have been processed."""

    maybe_sent = True


class UpstreamProtocolError(UpstreamError):
    pass


class AuthFailed(UpstreamError):
    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(f"ALP refused the API key: HTTP {http_status} {code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message


class OrderOutcomeUnknown(GatewayError):
    """Whether the order exists could not be decided (several candidates, or no time to look).

    Not UNAVAILABLE and not RESOURCE_EXHAUSTED, which clients retry blindly: a retry with the same
    client_order_id is safe (it looks again, never sends), a retry without one may double it.
    """

    def __init__(
        self, client_order_id: str, candidates: tuple[int, ...] = (), why: str = ""
    ) -> None:
        text = f"order outcome unknown ({why or 'ambiguous failure'})"
        if candidates:
            text += f"; candidate order ids {', '.join(map(str, candidates[:20]))}"
        super().__init__(text)
        self.client_order_id = client_order_id
        self.candidates = candidates
        self.why = why


class OrderNotPlaced(GatewayError):
    """The call failed and reconciliation verified that ALP holds no such order: safe to retry."""

    def __init__(self, cause: GatewayError, *, reason: str = "ORDER_NOT_PLACED") -> None:
        what = "no order was placed" if reason == "ORDER_NOT_PLACED" else "nothing was cancelled"
        super().__init__(f"{cause}; verified: {what}")
        self.cause = cause
        self.reason = reason


class StreamError(GatewayError):
    pass


class SlowConsumer(StreamError):
    def __init__(self, channel: str, lost: int) -> None:
        super().__init__(
            f"consumer too slow on {channel}: queue overflowed, {lost} events could not be delivered"
        )
        self.channel = channel
        self.lost = lost


class Draining(StreamError):
    def __init__(self) -> None:
        super().__init__("gateway draining, reconnect")


class TopicRefused(StreamError):
    """ALP answered a subscribe with "Topic does not exist" (not_found) or "Invalid topic"."""

    def __init__(self, topic: str, alp_message: str, *, not_found: bool) -> None:
        what = "does not exist upstream" if not_found else "is not a valid ALP topic"
        super().__init__(f"topic {topic[:80]} {what}: {alp_message[:200]}")
        self.topic = topic
        self.alp_message = alp_message
        self.not_found = not_found


class PrivateLoginRefused(StreamError):
    """The account's WebSocket login was refused repeatedly (e.g. revoked or deleted key)."""

    def __init__(self, account: str, alp_message: str) -> None:
        super().__init__(
            f"ALP refused the WebSocket login of account {account}: {alp_message[:200]}"
        )
        self.account = account
        self.alp_message = alp_message


class RateLimited(GatewayError):
    def __init__(self, bucket: str, retry_after: float) -> None:
        super().__init__(f"client-side rate limit {bucket!r} exhausted")
        self.bucket = bucket
        self.retry_after = retry_after


class AuditUnavailable(GatewayError):
    """The audit trail cannot be written: trading is refused rather than left unaudited."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"audit trail unavailable ({reason}); trading refused until it is fixed")
        self.reason = reason


class IdempotencyUnavailable(GatewayError):
    """The fleet's idempotency store (Redis) cannot be read: the order is not sent, a retry is safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"idempotency store unavailable ({reason}); the order was not sent")
        self.reason = reason
