"""OrderDesk: every order call ends placed-and-told, verified-absent, or explicitly unknown.

- Idempotency: a caller's client_order_id names one intent (gateway.core.idempotency); a retry
  waits for, replays or re-checks the first attempt and never sends a second order.
- Reconciliation: on an ambiguous failure (timeout, reset after sending, any 5xx, a call cut by
  the drain) the desk reads `GET /accounts/order` in its own rate lane and inside the part of the
  caller's deadline it held back, and decides by what ALP lists (gateway.core.reconcile).
- Drain: `begin_drain` refuses new order calls; calls still running when `cut` comes are stopped
  and answered ORDER_OUTCOME_UNKNOWN, never with a generic cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from gateway.core import rest_parsing, rest_requests
from gateway.core.idempotency import DEFAULT_WINDOW_S, Decision, Key, fingerprint
from gateway.core.models import Order
from gateway.core.rate_limit import Lane
from gateway.core.reconcile import Mark, Verdict, lookup, newest_id
from gateway.core.validation import CancelByIds, CancelTarget, OrderSpec
from gateway.errors import (
    Draining,
    OrderNotPlaced,
    OrderOutcomeUnknown,
    RateLimited,
    UpstreamError,
    UpstreamHttpError,
    UpstreamProtocolError,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationError,
)
from gateway.exchange.order_intents import IntentStore, IntentView, LocalIntents
from gateway.exchange.rest_client import AccountSession
from gateway.exchange.single_flight import SingleFlight
from gateway.exchange.upstream import Upstream

log = logging.getLogger(__name__)

OPEN_STATUSES = frozenset({"OPEN", "PENDING", "PARTIAL_FILLED"})
LAST_LOOKUP_S = 0.3  # time a final lookup needs before the caller's deadline


def is_ambiguous(exc: UpstreamError) -> bool:
    """True when ALP may have applied a non-idempotent call although it failed."""
    if isinstance(exc, UpstreamTimeout | UpstreamProtocolError):
        return True  # (an answer we cannot read, e.g. a proxy's HTML page for a 2xx: it may exist)
    if isinstance(exc, UpstreamUnavailable):
        return exc.maybe_sent
    return isinstance(exc, UpstreamHttpError) and exc.http_status >= 500


@dataclass(frozen=True)
class DeskSettings:
    wallet_spelling: str = "docs"
    settle_s: float = 1.0  # ALP applies a request within this of giving up on it, or never
    reconcile_share: float = 0.3  # of the caller's remaining time held back for the lookup
    reconcile_min_s: float = 0.5
    reconcile_max_s: float = 3.0
    lookup_pause_s: float = 0.25
    clock_skew_s: float = 5.0
    idempotency_window_s: float = DEFAULT_WINDOW_S


@dataclass(frozen=True)
class Placed:
    order_ids: tuple[int, ...]
    reconciled: bool


@dataclass(frozen=True)
class _Attempt:
    """One PlaceOrder call as it moves between the desk's steps."""

    account: AccountSession
    spec: OrderSpec
    key: Key | None  # (caller, account, client_order_id) when the caller gave an id
    deadline: float
    request_id: str


@dataclass(frozen=True)
class Cancelled:
    payload: object  # ALP's answer (None for an empty 2xx)
    reconciled_statuses: dict[int, str] | None = None  # order id -> status, when reconciled


class OrderDesk:
    def __init__(
        self,
        upstream: Upstream,
        settings: DeskSettings = DeskSettings(),
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        intents: IntentStore | None = None,
    ) -> None:
        self._upstream = upstream
        self._settings = settings
        self._clock = clock
        self._wall = wall
        self.intents: IntentStore = intents or LocalIntents(settings.idempotency_window_s)
        self._newest: dict[str, int] = {}
        self._sending: dict[str, Counter[str]] = {}  # account -> terms -> undecided attempts
        self._running: set[asyncio.Task[object]] = set()
        self._listings: SingleFlight[str, tuple[list[Order], float]] = SingleFlight()
        self._draining = False
        self._cutting = False

    # -- drain -------------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._running)

    def begin_drain(self) -> None:
        self._draining = True

    async def wait_idle(self, timeout_s: float) -> bool:
        if self._running:
            await asyncio.wait(set(self._running), timeout=max(0.0, timeout_s))
        return not self._running

    def cut(self) -> None:
        """Stop every order call still running; each answers ORDER_OUTCOME_UNKNOWN."""
        self._cutting = True
        for task in tuple(self._running):
            task.cancel()

    @contextlib.asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        if self._draining:
            raise Draining()
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            yield
        finally:
            self._running.discard(task)

    def _was_cut(self) -> bool:
        task = asyncio.current_task()
        if self._cutting and task is not None and task.cancelling():
            task.uncancel()
            return True
        return False

    # -- PlaceOrder ----------------------------------------------------------------------------------
    async def place(
        self,
        account: AccountSession,
        spec: OrderSpec,
        *,
        caller: str,
        deadline: float,
        request_id: str,
    ) -> Placed:
        async with self._tracked():
            key: Key | None = None
            if spec.client_order_id is not None:
                key = (caller, account.name, spec.client_order_id)
            try:
                return await self._place(_Attempt(account, spec, key, deadline, request_id))
            except asyncio.CancelledError:
                if not self._was_cut():
                    raise
                raise OrderOutcomeUnknown(
                    spec.client_order_id or "", (), "gateway shut down mid-call"
                ) from None

    async def _place(self, attempt: _Attempt) -> Placed:
        key = attempt.key
        if key is None:
            return await self._send(attempt)
        print_ = fingerprint(attempt.spec)
        while True:
            remaining = max(0.0, attempt.deadline - self._clock())
            decision, intent = await self.intents.begin(
                key, print_, self._wall(), lease_s=remaining
            )
            if decision is Decision.PROCEED:
                return await self._send(attempt)
            if decision is Decision.CONFLICT:
                raise ValidationError(
                    "client_order_id", "already used for an order with other parameters"
                )
            if decision is Decision.REPLAY:
                return Placed(intent.order_ids, intent.reconciled)
            if decision is Decision.RECHECK:
                return await self._recheck(attempt, key, intent)
            # WAIT: the first attempt is running; its end wakes us
            remaining = attempt.deadline - self._clock()
            if remaining <= 0:
                raise OrderOutcomeUnknown(key[2], (), "the first attempt is still running")
            await self.intents.wait_change(key, remaining)

    async def _send(self, attempt: _Attempt) -> Placed:
        """Send once, counted among the account's attempts with these terms until it is decided:
        while another is undecided, an order with the same terms may be that one's (_look)."""
        sending = self._sending.setdefault(attempt.account.name, Counter())
        terms = fingerprint(attempt.spec)
        sending[terms] += 1
        try:
            return await self._send_counted(attempt)
        finally:
            sending[terms] -= 1
            if not sending[terms]:
                del sending[terms]

    async def _send_counted(self, attempt: _Attempt) -> Placed:
        account, spec, key = attempt.account, attempt.spec, attempt.key
        mark = Mark(self._newest.get(account.name), self._wall(), self._settings.clock_skew_s)
        if key is not None:
            await self.intents.set_mark(key, mark)
        body = rest_requests.place_order(spec, wallet_spelling=self._settings.wallet_spelling)
        cause: UpstreamError
        try:
            payload = await self._upstream.private(
                account,
                body,
                deadline=self._send_deadline(attempt.deadline),
                request_id=attempt.request_id,
                lane=Lane.TRADE,
            )
        except UpstreamError as exc:
            if not is_ambiguous(exc):
                await self._forget(key)  # ALP refused it, or it never left: a retry may place
                raise
            cause = exc
        except RateLimited:
            await self._forget(key)  # the gateway's own limit: nothing was sent
            raise
        except BaseException:
            await self._unknown(key, ())  # cut by the drain, or a bug: never leave it in flight
            raise
        else:
            try:
                ids = tuple(rest_parsing.parse_place_order(payload))
            except UpstreamProtocolError as exc:  # a 2xx we cannot read: it exists, which one?
                cause = exc
            else:
                return await self._placed(account, key, ids, reconciled=False)
        log.warning(
            "PlaceOrder on %s ambiguous (%s); reconciling", account.name, type(cause).__name__
        )
        try:
            verdict, candidates = await self._look(attempt, mark, self._clock(), own=1)
        except BaseException:
            await self._unknown(key, ())
            raise
        if verdict is Verdict.FOUND:
            return await self._placed(account, key, candidates, reconciled=True)
        if verdict is Verdict.ABSENT:
            await self._forget(key)
            raise OrderNotPlaced(cause) from cause
        await self._unknown(key, candidates)
        why = {
            Verdict.SEVERAL: "several matching orders",
            Verdict.INCOMPLETE: "ALP's order list could not settle it",
        }[verdict]
        if verdict is Verdict.INCOMPLETE and candidates:
            why = "a matching order may be another undecided attempt's with the same terms"
        raise OrderOutcomeUnknown(spec.client_order_id or "", candidates, why) from cause

    def _send_deadline(self, deadline: float) -> float:
        """Hold back part of the caller's time so an ambiguous failure can still be looked up."""
        remaining = deadline - self._clock()
        s = self._settings
        reserve = min(s.reconcile_max_s, max(s.reconcile_min_s, remaining * s.reconcile_share))
        return deadline - reserve if remaining > 2 * reserve else deadline

    async def _forget(self, key: Key | None) -> None:
        if key is not None:
            await _shielded(self.intents.forget(key))

    async def _unknown(self, key: Key | None, candidates: tuple[int, ...]) -> None:
        if key is not None:
            await _shielded(self.intents.unknown(key, candidates, self._wall()))

    async def _placed(
        self, account: AccountSession, key: Key | None, ids: tuple[int, ...], *, reconciled: bool
    ) -> Placed:
        self._newest[account.name] = max(self._newest.get(account.name, 0), *ids)
        await _shielded(self.intents.claim(account.name, ids))
        if key is not None:
            await _shielded(self.intents.placed(key, ids, reconciled=reconciled))
        return Placed(ids, reconciled)

    async def _recheck(self, attempt: _Attempt, key: Key, intent: IntentView) -> Placed:
        """A retry of an intent that ended unknown: look again; never send."""
        mark = intent.mark or Mark(None, self._wall() - self._settings.idempotency_window_s)
        ended_at = intent.ended_at if intent.ended_at is not None else self._wall()
        given_up_at = self._clock() - max(0.0, self._wall() - ended_at)
        verdict, candidates = await self._look(attempt, mark, given_up_at, own=0)
        if verdict is Verdict.FOUND:
            return await self._placed(attempt.account, key, candidates, reconciled=True)
        if verdict is Verdict.ABSENT:
            await self._forget(key)
            raise OrderNotPlaced(
                OrderOutcomeUnknown(key[2], (), "an earlier attempt failed ambiguously")
            )
        raise OrderOutcomeUnknown(key[2], candidates or intent.candidates, "still undecided")

    async def _look(
        self, attempt: _Attempt, mark: Mark, given_up_at: float | None, *, own: int
    ) -> tuple[Verdict, tuple[int, ...]]:
        """List ALP's orders until a verdict; INCOMPLETE when the deadline comes first.

        "Absent" counts only for a listing started `settle_s` after the attempt was given up: a
        request ALP is still holding may yet create the order. One matching order is ours only
        when no other attempt with the same terms is undecided (`own`: whether this call is
        counted among them): it may be that one's, whose answer is late; its answer claims it.
        Concurrent lookups on one account share each listing: one request a round, not N.
        """
        account, deadline = attempt.account, attempt.deadline
        s = self._settings
        settles_at = -1.0 if given_up_at is None else given_up_at + s.settle_s
        terms = fingerprint(attempt.spec)
        contested: tuple[int, ...] = ()
        while True:
            try:
                orders, started_at = await self._list_orders(account, deadline)
            except (UpstreamError, RateLimited) as exc:  # never surfaced: the answer is "unknown"
                log.warning("reconciliation lookup on %s failed: %s", account.name, exc)
                return Verdict.INCOMPLETE, ()
            claimed = await self.intents.claimed(account.name)  # as of now, not as of the start
            found = lookup(orders, attempt.spec, mark, claimed)
            rivals = self._sending.get(account.name, Counter())[terms] - own
            if found.verdict is Verdict.FOUND and rivals > 0:
                contested = found.candidates  # maybe a rival's: look again once it is decided
            elif found.verdict in (Verdict.FOUND, Verdict.SEVERAL):
                return found.verdict, found.candidates
            else:
                contested = ()
            if found.verdict is Verdict.ABSENT and started_at >= settles_at:
                return Verdict.ABSENT, ()
            now = self._clock()
            wake = max(now + s.lookup_pause_s, settles_at)
            last_call = deadline - LAST_LOOKUP_S
            if wake > last_call:
                if now + s.lookup_pause_s > last_call:
                    return Verdict.INCOMPLETE, contested
                wake = last_call  # one more look before the deadline: a late order is found
            await asyncio.sleep(wake - now)

    async def _list_orders(
        self, account: AccountSession, deadline: float
    ) -> tuple[list[Order], float]:
        """`GET /accounts/order` in the reconcile lane, shared by concurrent lookups."""

        async def listing() -> tuple[list[Order], float]:
            started_at = self._clock()
            payload = await self._upstream.private(
                account, rest_requests.orders(), deadline=deadline, lane=Lane.RECONCILE
            )
            orders = rest_parsing.parse_orders(payload)
            newest = newest_id(orders)
            if newest is not None:
                self._newest[account.name] = max(self._newest.get(account.name, 0), newest)
            return orders, started_at

        return await self._listings.run(account.name, listing)

    # -- CancelOrders --------------------------------------------------------------------------------
    async def cancel(
        self, account: AccountSession, target: CancelTarget, *, deadline: float, request_id: str
    ) -> Cancelled:
        async with self._tracked():
            try:
                return await self._cancel(account, target, deadline, request_id)
            except asyncio.CancelledError:  # also while a failed cancel is being looked up
                if not self._was_cut():
                    raise
                raise OrderOutcomeUnknown("", (), "gateway shut down mid-cancel") from None

    async def _cancel(
        self, account: AccountSession, target: CancelTarget, deadline: float, request_id: str
    ) -> Cancelled:
        known_before = self._newest.get(account.name)  # orders above it may postdate the cancel
        try:
            payload = await self._upstream.private(
                account,
                rest_requests.cancel_orders(target),
                deadline=self._send_deadline(deadline),
                request_id=request_id,
                lane=Lane.TRADE,
            )
        except UpstreamError as exc:
            if not is_ambiguous(exc):
                raise
            return await self._settle_cancel(account, target, exc, deadline, known_before)
        return Cancelled(payload)

    async def _settle_cancel(
        self,
        account: AccountSession,
        target: CancelTarget,
        cause: UpstreamError,
        deadline: float,
        known_before: int | None,
    ) -> Cancelled:
        """Cancelling is safe to repeat; what matters is not to call failed what happened.

        "Not applied" needs proof: every order the cancel concerned is listed and one of them is
        still open `settle_s` after the attempt was given up. For all / by pair only orders no
        newer than the newest known before the cancel count (later ones may postdate it). An id
        ALP does not list (it lists the newest 100), or no order known before a cancel of all /
        by pair, leaves the outcome unknown."""
        given_up_at = self._clock()
        while True:
            try:
                orders, started_at = await self._list_orders(account, deadline)
            except (UpstreamError, RateLimited):
                raise OrderOutcomeUnknown("", (), "cancel failed and the lookup too") from cause
            wanted = _cancel_scope(orders, target, known_before)
            if wanted is None:
                raise OrderOutcomeUnknown(
                    "",
                    (),
                    "ALP's order list (the newest 100) cannot tell what the cancel concerned",
                ) from cause
            if not any(o.status_raw in OPEN_STATUSES for o in wanted):
                return Cancelled(None, {o.id: o.status_raw for o in wanted})
            if started_at >= given_up_at + self._settings.settle_s:
                # still open: the cancel did not happen (repeating a cancel is harmless)
                raise OrderNotPlaced(cause, reason="CANCEL_NOT_APPLIED") from cause
            if self._clock() + self._settings.lookup_pause_s >= deadline:
                raise OrderOutcomeUnknown("", (), "cancel outcome not settled in time") from cause
            await asyncio.sleep(self._settings.lookup_pause_s)


async def _shielded(step: Awaitable[None]) -> None:
    """Record an outcome even while the call is being cut: the next retry depends on it."""
    await asyncio.shield(step)


def _cancel_scope(
    orders: list[Order], target: CancelTarget, known_before: int | None
) -> list[Order] | None:
    """The listed orders a cancel surely concerned; None when that cannot be told: a requested
    id is not listed, or (all / by pair) no order id was known before the cancel was sent."""
    if isinstance(target, CancelByIds):
        by_id = {o.id: o for o in orders}
        if any(i not in by_id for i in target.ids):
            return None
        return [by_id[i] for i in target.ids]
    if known_before is None:
        return None
    pair = getattr(target, "pair", None)
    return [o for o in orders if o.id <= known_before and (pair is None or o.pair == pair)]
