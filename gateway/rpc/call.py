"""Per-call facts taken from a gRPC call: request id, caller deadline, selected ALP account."""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

ACCOUNT_HEADER: Final = "x-alp-account"
REQUEST_ID_HEADER: Final = "x-request-id"
_REQUEST_ID_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
caller_var: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="")


def metadata_value(context: Any, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            value = item.value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def choose_request_id(offered: str | None) -> str:
    """The caller's id when it is short and plain (so it is safe in logs/headers), else a new one."""
    if offered and len(offered) <= 64 and set(offered) <= _REQUEST_ID_CHARS:
        return offered
    return uuid.uuid4().hex


def deadline_of(
    remaining: float | None, *, margin_s: float, default_s: float, clock: float | None = None
) -> float:
    """Absolute monotonic deadline for upstream work: the caller's deadline minus a margin."""
    now = time.monotonic() if clock is None else clock
    if remaining is None:
        return now + default_s
    return now + max(0.0, remaining - margin_s)


def first_value(items: Sequence[tuple[str, str]], key: str) -> str | None:
    for k, v in items:
        if k == key:
            return v
    return None
