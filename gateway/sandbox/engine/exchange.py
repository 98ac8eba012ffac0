"""The sandbox exchange: accounts, wallets, matching with price-time priority, stops and fees.

Pure state machine: every mutation takes `now` (Unix seconds) and records events for publishing.
Rejections raise ExchangeError and leave the state untouched (checks run before any change).
Fees are charged in the currency received, rounded down to 8 places, and credited to the fee
account, so the total of every currency over all wallets is conserved exactly.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal

from gateway.sandbox.engine.book import PairBook
from gateway.sandbox.engine.market_data import MarketData
from gateway.sandbox.engine.records import (
    AccountInfo,
    AccountTrade,
    Activity,
    Balance,
    BookEvent,
    BookView,
    Candle,
    Event,
    ExchangeError,
    Order,
    OrderEvent,
    OrderRequest,
    PublicTrade,
    Ticker,
    TradeEvent,
    Wallet,
    WalletEvent,
)
from gateway.sandbox.engine.specs import CurrencySpec, FeeRule, PairSpec

FEE_QUANTUM = Decimal("0.00000001")
WALLET_TYPES = ("SPOT", "MARGIN_CROSS", "MARGIN_ISOLATED", "FUNDING")
WALLET_ALIASES = {"CROSS_MARGIN": "MARGIN_CROSS", "ISOLATED_MARGIN": "MARGIN_ISOLATED"}
ORDER_TYPES = ("LIMIT", "MARKET", "STOP_LIMIT", "STOP_MARKET")
STOP_MARKET_BUY_BUFFER = Decimal("1.1")  # reserve for a stop-market buy: amount x stop x 1.1
# op_type codes of the operation history
OP_DEPOSIT, OP_RESERVE, OP_TRADE, OP_FEE, OP_RELEASE = 1, 2, 3, 4, 5


def _bad(code: str, message: str) -> ExchangeError:
    return ExchangeError(400, code, message)


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 99


class Exchange:
    def __init__(
        self,
        pairs: Sequence[PairSpec],
        currencies: Sequence[CurrencySpec],
        *,
        fee_account_id: int,
        default_maker_fee: Decimal = Decimal("0.001"),
        default_taker_fee: Decimal = Decimal("0.002"),
    ) -> None:
        self._pairs = {p.name: p for p in pairs}
        self._currencies = {c.code: c for c in currencies}
        self.fee_account_id = fee_account_id
        self._default_fees = (default_maker_fee, default_taker_fee)
        self._accounts: dict[int, AccountInfo] = {}
        self._wallets: dict[tuple[int, str, str], Wallet] = {}
        self._orders: dict[int, Order] = {}
        self._orders_by_account: dict[int, list[int]] = defaultdict(list)
        self._books = {name: PairBook() for name in self._pairs}
        self._stops: dict[str, list[int]] = defaultdict(list)
        self._fee_rules: dict[int, list[FeeRule]] = defaultdict(list)
        self._account_trades: dict[int, list[AccountTrade]] = defaultdict(list)
        self._activity: dict[int, list[Activity]] = defaultdict(list)
        self._credited: dict[str, Decimal] = defaultdict(Decimal)
        self._events: list[Event] = []
        self._book_deltas: dict[str, dict[tuple[str, Decimal], Decimal]] = {}
        self.market = MarketData(self._pairs)
        self._next_order_id = 1
        self._next_trade_id = 1
        self.open_account(fee_account_id, email="fees@sandbox.alp", name="fee account")

    # -- set-up ----------------------------------------------------------------------------
    def open_account(
        self, account_id: int, *, email: str, name: str, parent_id: int | None = None
    ) -> None:
        self._accounts[account_id] = AccountInfo(account_id, email, name, parent_id)

    def add_fee_rule(self, rule: FeeRule) -> None:
        self._fee_rules[rule.account_id].append(rule)

    def credit(
        self, account_id: int, currency: str, amount: Decimal, now: float, wallet_type: str = "SPOT"
    ) -> None:
        if currency not in self._currencies:
            raise _bad("1020", f"currency {currency} not found")
        wallet = self._wallet(account_id, currency, wallet_type)
        wallet.balance += amount
        wallet.last_update_at = now
        self._credited[currency] += amount
        self._record(account_id, currency, wallet_type, amount, Decimal(0), OP_DEPOSIT, now)

    # -- reads -----------------------------------------------------------------------------
    def pairs(self) -> list[PairSpec]:
        return list(self._pairs.values())

    def currencies(self) -> list[CurrencySpec]:
        return list(self._currencies.values())

    def pair(self, name: str) -> PairSpec:
        spec = self._pairs.get(name)
        if spec is None:
            raise _bad("1016", f"pair {name[:32]} not found")
        return spec

    def accounts(self, account_id: int, include_subaccounts: bool) -> list[AccountInfo]:
        found = [self._accounts[account_id]]
        if include_subaccounts:
            found += [a for a in self._accounts.values() if a.parent_id == account_id]
        return found

    def balances(self, account_id: int) -> list[Balance]:
        return [
            Balance(w.balance, w.reserve, cur, wt, w.last_update_at, acc)
            for (acc, cur, wt), w in sorted(self._wallets.items())
            if acc == account_id
        ]

    def wallet(self, account_id: int, currency: str, wallet_type: str = "SPOT") -> Wallet:
        return dataclasses.replace(self._wallet(account_id, currency, wallet_type))

    def fee_rules(self, account_id: int) -> list[FeeRule]:
        rules = self._fee_rules.get(account_id)
        if rules:
            return list(rules)
        maker, taker = self._default_fees
        return [FeeRule(account_id, maker, taker)]

    def orders(self, account_id: int, limit: int = 100) -> list[Order]:
        ids = self._orders_by_account.get(account_id, [])
        return [dataclasses.replace(self._orders[i]) for i in reversed(ids[-limit:])]

    def order(self, account_id: int, order_id: int) -> Order | None:
        order = self._orders.get(order_id)
        if order is None or order.account_id != account_id:
            return None
        return dataclasses.replace(order)

    def account_trades(
        self,
        account_id: int,
        *,
        pair: str | None = None,
        side: str | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        limit: int = 100,
    ) -> list[AccountTrade]:
        out = []
        for trade in reversed(self._account_trades.get(account_id, [])):
            if (pair and trade.pair != pair) or (side and trade.side != side):
                continue
            if start_time is not None and trade.timestamp < start_time:
                continue
            if end_time is not None and trade.timestamp >= end_time:
                continue
            out.append(trade)
            if len(out) >= limit:
                break
        return out

    def activity(self, account_id: int, *, limit: int = 100, offset: int = 0) -> list[Activity]:
        entries = list(reversed(self._activity.get(account_id, [])))
        return entries[offset : offset + limit]

    def trades(self, pair: str, limit: int = 100) -> list[PublicTrade]:
        self.pair(pair)
        return self.market.trades(pair, limit)

    def order_book(
        self, pair: str, limit_buy: int | None = None, limit_sell: int | None = None
    ) -> BookView:
        self.pair(pair)
        book = self._books[pair]
        return BookView(buy=book.bids.view(limit_buy), sell=book.asks.view(limit_sell))

    def ticker(self, pair: str, now: float) -> Ticker:
        spec = self.pair(pair)
        book = self._books[pair]
        return self.market.ticker(spec, now, book.bids.best(), book.asks.best())

    def tickers(self, now: float) -> list[Ticker]:
        return [self.ticker(name, now) for name in self._pairs]

    def candles(
        self, pair: str, interval: str, *, since: int | None, until: int | None, limit: int = 500
    ) -> list[Candle]:
        self.pair(pair)
        return self.market.candles(pair, interval, since=since, until=until, limit=limit)

    def currency_rates(self) -> dict[str, Decimal]:
        return self.market.rates(list(self._currencies))

    def last_price(self, pair: str) -> Decimal | None:
        return self.market.last_price(pair)

    def drain_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- trading ---------------------------------------------------------------------------
    def place_order(self, account_id: int, req: OrderRequest, now: float) -> int:
        _spec, order = self._validated(account_id, req, now)
        wallet = self._wallet(account_id, order.reserve_currency, order.wallet_type)
        if wallet.balance - wallet.reserve < order.reserved:
            raise _bad("2002", "insufficient funds")
        order.id = self._next_order_id
        self._next_order_id += 1
        self._orders[order.id] = order
        self._orders_by_account[account_id].append(order.id)
        self._lock(order, order.reserved, now)
        if not order.triggered:
            self._stops[order.pair].append(order.id)
            self._order_event(order, now)
            self._maybe_trigger(order.pair, now)
        else:
            self._activate(order, now)
        self._flush_book(now)
        return order.id

    def cancel_orders(
        self, account_id: int, order_ids: Sequence[int], now: float
    ) -> dict[int, str]:
        result: dict[int, str] = {}
        for order_id in order_ids:
            order = self._orders.get(order_id)
            if order is None or order.account_id != account_id or not order.is_open:
                result[order_id] = "order not found"
                continue
            self._cancel(order, now)
            result[order_id] = "CANCELLED"
        self._flush_book(now)
        return result

    def cancel_all(self, account_id: int, pair: str | None, now: float) -> int:
        if pair is not None:
            self.pair(pair)
        open_ids = [
            i
            for i in self._orders_by_account.get(account_id, [])
            if self._orders[i].is_open and (pair is None or self._orders[i].pair == pair)
        ]
        for order_id in open_ids:
            self._cancel(self._orders[order_id], now)
        self._flush_book(now)
        return len(open_ids)

    # -- internals: validation -----------------------------------------------------------------
    def _validated(self, account_id: int, req: OrderRequest, now: float) -> tuple[PairSpec, Order]:
        if account_id not in self._accounts:
            raise ExchangeError(401, "UNAUTHORIZED", "unknown account")
        if not req.pair:
            raise _bad("1001", "field pair is required")
        spec = self.pair(req.pair)
        if req.order_type not in ORDER_TYPES:
            raise _bad("1006", "invalid order type")
        if req.side not in ("BUY", "SELL"):
            raise _bad("1007", "invalid order side")
        wallet_type = WALLET_ALIASES.get(req.wallet_type, req.wallet_type)
        if wallet_type not in WALLET_TYPES:
            raise _bad("1002", "invalid wallet type")
        kind = req.order_type
        needs = {
            "LIMIT": ("base_amount", "limit_price"),
            "STOP_LIMIT": ("base_amount", "limit_price", "stop_price", "stop_operator"),
            "STOP_MARKET": ("base_amount", "stop_price", "stop_operator"),
            "MARKET": ("quote_amount",) if req.side == "BUY" else ("base_amount",),
        }[kind]
        for name in needs:
            if getattr(req, name) in (None, ""):
                raise _bad("1001", f"field {name} is required")
        for name, code in (("base_amount", "1003"), ("quote_amount", "1003")):
            value = getattr(req, name)
            if value is not None and not value > 0:
                raise _bad(code, "invalid order amount")
        if req.limit_price is not None and not req.limit_price > 0:
            raise _bad("1004", "invalid price")
        if req.stop_price is not None and not req.stop_price > 0:
            raise _bad("1009", "invalid stop price")
        if kind.startswith("STOP") and req.stop_operator not in ("GTE", "LTE"):
            raise _bad("1009", "invalid stop operator")
        for price in (req.limit_price, req.stop_price):
            if price is not None and _places(price) > spec.price_precision:
                raise _bad("1017", f"price precision is {spec.price_precision}")
        base = req.base_amount
        if base is not None:
            if _places(base) > spec.amount_precision:
                raise _bad("1017", f"amount precision is {spec.amount_precision}")
            if not spec.min_order_size <= base <= spec.max_order_size:
                raise _bad("1018", "invalid order size")
        reference = req.limit_price or req.stop_price
        if base is not None and reference is not None and base * reference < spec.min_order_value:
            raise _bad("1018", "order value below minimum")
        if kind == "MARKET" and req.side == "BUY":
            assert req.quote_amount is not None
            if req.quote_amount < spec.min_order_value:
                raise _bad("1018", "order value below minimum")
        book = self._books[spec.name]
        if kind == "MARKET" and req.side == "SELL" and base is not None:
            best_bid = book.opposite("SELL").best()  # the value it would fetch at best
            if best_bid is not None and base * best_bid < spec.min_order_value:
                raise _bad("1018", "order value below minimum")
        if kind == "LIMIT" and req.post_only:
            assert req.limit_price is not None
            best = book.opposite(req.side).best()
            crosses = best is not None and (
                req.limit_price >= best if req.side == "BUY" else req.limit_price <= best
            )
            if crosses:
                raise _bad("1006", "post only order would match")
        if kind == "MARKET" and book.opposite(req.side).best() is None:
            raise _bad("1003", "no liquidity for a market order")
        order = Order(
            id=0,
            account_id=account_id,
            pair=spec.name,
            side=req.side,
            type=kind,
            wallet_type=wallet_type,
            amount=base if base is not None else Decimal(0),
            price=req.limit_price if req.limit_price is not None else Decimal(0),
            quote_amount=req.quote_amount,
            stop_price=req.stop_price,
            stop_operator=req.stop_operator,
            client_order_id=req.client_order_id,
            post_only=req.post_only,
            status="PENDING" if kind.startswith("STOP") else "OPEN",
            date=now,
            updated_at=now,
            triggered=not kind.startswith("STOP"),
        )
        order.reserve_currency, order.reserved = self._reserve_need(spec, order)
        return spec, order

    @staticmethod
    def _reserve_need(spec: PairSpec, order: Order) -> tuple[str, Decimal]:
        if order.side == "SELL":
            return spec.base, order.amount
        if order.type in ("LIMIT", "STOP_LIMIT"):
            return spec.quote, order.amount * order.price
        if order.type == "MARKET":
            assert order.quote_amount is not None
            return spec.quote, order.quote_amount
        assert order.stop_price is not None  # STOP_MARKET BUY
        need = order.amount * order.stop_price * STOP_MARKET_BUY_BUFFER
        return spec.quote, need.quantize(FEE_QUANTUM)

    # -- internals: matching ------------------------------------------------------------------
    def _activate(self, order: Order, now: float) -> None:
        order.open_at = now
        if order.type in ("LIMIT", "STOP_LIMIT"):
            self._match_limit(order, now)
        else:
            self._match_market(order, now)

    def _match_limit(self, order: Order, now: float) -> None:
        book = self._books[order.pair]
        opposite = book.opposite(order.side)
        while order.remaining > 0:
            best = opposite.best()
            if best is None or (best > order.price if order.side == "BUY" else best < order.price):
                break
            self._fill_against(order, best, order.remaining, now)
        if order.remaining > 0:
            book.side(order.side).add(order.price, order.id, order.remaining)
            self._delta(order.pair, order.side, order.price, order.remaining)
            order.status = "PARTIAL_FILLED" if order.amount_filled else "OPEN"
        else:
            order.status, order.done_at = "FILLED", now
            self._release(order, now)  # price improvement of a buy stays unreserved
        self._order_event(order, now)
        self._maybe_trigger(order.pair, now)

    def _match_market(self, order: Order, now: float) -> None:
        spec = self._pairs[order.pair]
        opposite = self._books[order.pair].opposite(order.side)
        quantum = Decimal(1).scaleb(-spec.amount_precision)
        by_quote = order.side == "BUY" and order.type == "MARKET"
        if by_quote:
            order.amount = Decimal(0)
        while True:
            best = opposite.best()
            if best is None:
                break
            if by_quote:
                budget = order.reserved
                qty = (budget / best).quantize(quantum, rounding=ROUND_DOWN)
                if qty <= 0:
                    break
                qty = min(qty, opposite.sizes[best])
                order.amount += qty
            else:
                if order.remaining <= 0:
                    break
                qty = order.remaining
                if order.side == "BUY":  # stop-market buy by base amount: bounded by the reserve
                    affordable = (order.reserved / best).quantize(quantum, rounding=ROUND_DOWN)
                    qty = min(qty, affordable)
                    if qty <= 0:
                        break
            self._fill_against(order, best, qty, now)
        leftover = order.remaining
        if leftover > 0:
            order.amount_canceled += leftover
        order.status = (
            "FILLED"
            if order.amount_canceled == 0 and order.amount_filled > 0
            else "PARTIAL_CANCELED"
            if order.amount_filled > 0
            else "CANCELLED"
        )
        order.done_at = now
        self._release(order, now)
        self._order_event(order, now)
        self._maybe_trigger(order.pair, now)

    def _fill_against(self, taker: Order, price: Decimal, wanted: Decimal, now: float) -> None:
        """Fill `taker` against the makers resting at `price`, oldest first, up to `wanted`."""
        book = self._books[taker.pair]
        side = book.opposite(taker.side)
        while wanted > 0 and price in side.queues:
            maker = self._orders[side.queues[price][0]]
            qty = min(wanted, maker.remaining)
            self._trade(taker, maker, price, qty, now)
            wanted -= qty
            side.reduce(price, qty)
            self._delta(taker.pair, maker.side, price, -qty)
            if maker.remaining == 0:
                side.pop_front(price)
                maker.status, maker.done_at = "FILLED", now
            else:
                maker.status = "PARTIAL_FILLED"
            self._order_event(maker, now)

    def _trade(self, taker: Order, maker: Order, price: Decimal, qty: Decimal, now: float) -> None:
        spec = self._pairs[taker.pair]
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        value = qty * price
        for order, is_maker in ((taker, False), (maker, True)):
            order.amount_filled += qty
            order.value_filled += value
            order.updated_at = now
            rate = self._fee_rate(order.account_id, spec, is_maker)
            if order.side == "BUY":
                spent = value
                reserved_part = (
                    qty * order.price if order.type in ("LIMIT", "STOP_LIMIT") else value
                )
                self._spend(order, spec.quote, spent, reserved_part, now)
                fee = (qty * rate).quantize(FEE_QUANTUM, rounding=ROUND_DOWN)
                self._receive(order, spec.base, qty, fee, now)
            else:
                self._spend(order, spec.base, qty, qty, now)
                fee = (value * rate).quantize(FEE_QUANTUM, rounding=ROUND_DOWN)
                self._receive(order, spec.quote, value, fee, now)
            self._account_trades[order.account_id].append(
                AccountTrade(trade_id, spec.name, order.side, price, qty, fee, now, order.id)
            )
        taker_side = taker.side.lower()
        self.market.record(PublicTrade(trade_id, spec.name, price, qty, now, taker_side))
        self._events.append(TradeEvent(spec.name, trade_id, qty, price, taker_side, now))

    def _fee_rate(self, account_id: int, spec: PairSpec, is_maker: bool) -> Decimal:
        rules = [
            r
            for r in self.fee_rules(account_id)
            if r.is_active and (r.pair_id is None or r.pair_id == spec.pair_id)
        ]
        rule = max(rules, key=lambda r: r.priority)
        return rule.maker_rate if is_maker else rule.taker_rate

    def _spend(
        self, order: Order, currency: str, amount: Decimal, reserved: Decimal, now: float
    ) -> None:
        wallet = self._wallet(order.account_id, currency, order.wallet_type)
        wallet.balance -= amount
        wallet.reserve -= reserved
        order.reserved -= reserved
        wallet.last_update_at = now
        self._record(
            order.account_id, currency, order.wallet_type, -amount, -reserved, OP_TRADE, now
        )
        self._wallet_event(order.account_id, currency, order.wallet_type, now)

    def _receive(
        self, order: Order, currency: str, amount: Decimal, fee: Decimal, now: float
    ) -> None:
        wallet = self._wallet(order.account_id, currency, order.wallet_type)
        wallet.balance += amount - fee
        wallet.last_update_at = now
        self._record(
            order.account_id, currency, order.wallet_type, amount, Decimal(0), OP_TRADE, now
        )
        if fee:
            self._record(
                order.account_id, currency, order.wallet_type, -fee, Decimal(0), OP_FEE, now
            )
            fees = self._wallet(self.fee_account_id, currency, "SPOT")
            fees.balance += fee
            fees.last_update_at = now
        self._wallet_event(order.account_id, currency, order.wallet_type, now)

    def _cancel(self, order: Order, now: float) -> None:
        if order.triggered and order.type in ("LIMIT", "STOP_LIMIT"):
            side = self._books[order.pair].side(order.side)
            side.remove(order.price, order.id, order.remaining)
            self._delta(order.pair, order.side, order.price, -order.remaining)
        elif not order.triggered:
            self._stops[order.pair].remove(order.id)
        order.amount_canceled += order.remaining
        order.status = "PARTIAL_CANCELED" if order.amount_filled else "CANCELLED"
        order.done_at = order.updated_at = now
        self._release(order, now)
        self._order_event(order, now)

    def _lock(self, order: Order, amount: Decimal, now: float) -> None:
        self._move_reserve(order, amount, OP_RESERVE, now)

    def _release(self, order: Order, now: float) -> None:
        if order.reserved == 0:
            return
        released, order.reserved = order.reserved, Decimal(0)
        self._move_reserve(order, -released, OP_RELEASE, now)

    def _move_reserve(self, order: Order, amount: Decimal, op_type: int, now: float) -> None:
        """`amount` into (negative: out of) the reserve of the order's wallet: recorded as the
        account's activity and published as a wallet event."""
        account_id, currency, wallet_type = (
            order.account_id,
            order.reserve_currency,
            order.wallet_type,
        )
        wallet = self._wallet(account_id, currency, wallet_type)
        wallet.reserve += amount
        wallet.last_update_at = now
        self._record(account_id, currency, wallet_type, Decimal(0), amount, op_type, now)
        self._wallet_event(account_id, currency, wallet_type, now)

    def _maybe_trigger(self, pair: str, now: float) -> None:
        last = self.market.last_price(pair)
        if last is None:
            return
        for order_id in list(self._stops[pair]):
            order = self._orders[order_id]
            assert order.stop_price is not None
            hit = (
                last >= order.stop_price
                if order.stop_operator == "GTE"
                else last <= order.stop_price
            )
            if hit and order_id in self._stops[pair]:
                self._stops[pair].remove(order_id)
                order.triggered = True
                order.status = "OPEN"
                self._activate(order, now)

    # -- internals: bookkeeping ----------------------------------------------------------------
    def _wallet(self, account_id: int, currency: str, wallet_type: str) -> Wallet:
        key = (account_id, currency, wallet_type)
        wallet = self._wallets.get(key)
        if wallet is None:
            wallet = self._wallets[key] = Wallet()
        return wallet

    def _record(
        self,
        account_id: int,
        currency: str,
        wallet_type: str,
        amount: Decimal,
        reserve: Decimal,
        op_type: int,
        now: float,
    ) -> None:
        self._activity[account_id].append(
            Activity(amount, reserve, currency, wallet_type, now, account_id, op_type)
        )

    def _wallet_event(self, account_id: int, currency: str, wallet_type: str, now: float) -> None:
        w = self._wallet(account_id, currency, wallet_type)
        self._events.append(
            WalletEvent(account_id, currency, wallet_type, w.balance, w.reserve, now)
        )

    def _order_event(self, order: Order, now: float) -> None:
        self._events.append(OrderEvent(order.account_id, dataclasses.replace(order), now))

    def _delta(self, pair: str, side: str, price: Decimal, amount: Decimal) -> None:
        deltas = self._book_deltas.setdefault(pair, {})
        key = ("bid" if side == "BUY" else "ask", price)
        deltas[key] = deltas.get(key, Decimal(0)) + amount

    def _flush_book(self, now: float) -> None:
        for pair, deltas in self._book_deltas.items():
            asks = [(p, d) for (s, p), d in sorted(deltas.items()) if s == "ask" and d != 0]
            bids = [
                (p, d)
                for (s, p), d in sorted(deltas.items(), reverse=True)
                if s == "bid" and d != 0
            ]
            if asks or bids:
                self._events.append(BookEvent(pair, asks, bids, now))
        self._book_deltas = {}

    # -- invariants ------------------------------------------------------------------------------
    def check_invariants(self) -> None:
        totals: dict[str, Decimal] = defaultdict(Decimal)
        reserves: dict[tuple[int, str, str], Decimal] = defaultdict(Decimal)
        for order in self._orders.values():
            filled = order.amount_filled + order.amount_canceled + order.remaining
            assert filled == order.amount, f"order {order.id}: amounts do not add up"
            assert order.remaining >= 0, f"order {order.id}: negative remaining"
            if order.is_open:
                reserves[(order.account_id, order.reserve_currency, order.wallet_type)] += (
                    order.reserved
                )
            else:
                assert order.reserved == 0, f"order {order.id}: closed but still reserves"
        for key, wallet in self._wallets.items():
            assert wallet.balance >= 0, f"{key}: negative balance {wallet.balance}"
            assert wallet.reserve >= 0, f"{key}: negative reserve {wallet.reserve}"
            assert wallet.reserve <= wallet.balance, f"{key}: reserve above balance"
            assert wallet.reserve == reserves.get(key, Decimal(0)), f"{key}: reserve mismatch"
            totals[key[1]] += wallet.balance
        for currency, total in totals.items():
            assert total == self._credited[currency], (
                f"{currency}: {total} != {self._credited[currency]}"
            )
        for name, book in self._books.items():
            bid, ask = book.bids.best(), book.asks.best()
            assert bid is None or ask is None or bid < ask, f"{name}: crossed book {bid} >= {ask}"
            for side in (book.bids, book.asks):
                for price, queue in side.queues.items():
                    size = sum((self._orders[i].remaining for i in queue), Decimal(0))
                    assert size == side.sizes[price], f"{name} {price}: level size mismatch"
