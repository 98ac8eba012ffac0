"""What a book consumer hears: RECONNECTING when it joins while the book's topics are down (then
RESYNCED), its statuses even when it falls behind and its backlog gives way to a fresh snapshot, and
each transition once although the book's two topics sit on two upstream sockets."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from alp.v3 import stream_pb2, stream_pb2_grpc

from gateway.app import Gateway
from gateway.core import ws_events
from gateway.exchange.book_keeper import BookKeeper, Level
from gateway.rpc.book_stream import BookViews
from gateway.sandbox import Sandbox
from tests.gateway.conftest import gateway_config
from tests.gateway.test_stream_joins import Recorder
from tests.gateway.test_stream_waiting import Gate
from tests.gateway.test_streams import eventually

RECONNECTING = stream_pb2.STREAM_STATE_RECONNECTING
RESYNCED = stream_pb2.STREAM_STATE_RESYNCED
SUBSCRIBED = stream_pb2.STREAM_STATE_SUBSCRIBED
PAIR = "BTC_USDT"


# -- 3. stream._start_books: a book joined while ALP is unreachable hears no RECONNECTING ---------
async def test_a_book_joined_while_alp_is_unreachable_hears_reconnecting(
    sandbox: Sandbox,
) -> None:
    """As for trades (test_stream_waiting): a consumer joining meanwhile hears RECONNECTING, then
    RESYNCED. REST works (the seed comes), the WebSocket cannot connect."""
    target = urlsplit(sandbox.ws_url)
    async with Gate(target.port or 0) as gate:
        config = gateway_config(
            sandbox, upstream__ws_url=f"ws://127.0.0.1:{gate.port}{target.path}"
        )
        async with (
            Gateway(config) as gateway,
            grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
        ):
            stub = stream_pb2_grpc.StreamServiceStub(channel)
            request = stream_pb2.StreamOrderBookRequest(pair=PAIR, depth=10)
            first = Recorder(stub.StreamOrderBook(request))
            late: Recorder | None = None
            try:
                await first.wait(lambda: bool(first.updates()))  # seeded from REST
                await eventually(lambda: gate.refused >= 3)  # the socket keeps failing
                late = Recorder(stub.StreamOrderBook(request))
                await late.wait(lambda: bool(late.updates()))  # type: ignore[union-attr]
                await asyncio.sleep(0.5)
                # it got a book nobody keeps current, and was not told so
                assert late.states == [RECONNECTING], late.states
                gate.open = True
                await late.wait(lambda: RESYNCED in late.states)  # type: ignore[union-attr]
                assert late.states == [RECONNECTING, RESYNCED]
            finally:
                await first.close()
                if late is not None:
                    await late.close()


# -- 4. delivery._restart_from_snapshot: a slow book consumer loses its statuses -------------------
def _keeper() -> BookKeeper:
    return BookKeeper(PAIR, feed=None, upstream=None)  # type: ignore[arg-type]  # never started


def _depth(keeper: BookKeeper, bids: dict[str, str], asks: dict[str, str]) -> None:
    def side(levels: dict[str, str]) -> tuple[Level, ...]:
        return tuple((Decimal(p), Decimal(a)) for p, a in levels.items())

    keeper.on_event(
        f"market_depth.{PAIR}",
        ws_events.Depth(Decimal("1767225600"), PAIR, side(asks), side(bids), None, None),
    )


async def _drain(messages: Any) -> list[Any]:
    out = []
    while True:
        try:
            raw = await asyncio.wait_for(anext(messages), 0.2)
        except TimeoutError:
            return out
        out.append(stream_pb2.StreamOrderBookResponse.FromString(raw))


@pytest.mark.parametrize("state", ["subscribed", "reconnecting"])
async def test_a_book_consumer_that_falls_behind_still_hears_its_statuses(state: str) -> None:
    """StreamOrderBook's queue (limit 3 here; stream.queue_limit live) is full when a status
    comes, or fills behind one: the resnapshot replaces the backlog, statuses included. In a
    Subscribe stream (Lane) the same book keeps them."""
    book = _keeper()
    _depth(book, {"100": "1"}, {"110": "1"})
    views = BookViews()
    stream = views.open(book, 20, 0, 3)
    stream.start()  # snapshot, sequence 1
    if state == "subscribed":  # _start_books: SUBSCRIBED right after the first snapshot...
        stream.status("subscribed", book.topics)
        for step in range(2, 5):  # ...and updates come before the consumer reads
            _depth(book, {"100": str(step)}, {"110": "1"})
    else:  # the consumer is behind when the upstream connection drops
        for step in range(2, 4):
            _depth(book, {"100": str(step)}, {"110": "1"})
        book.on_status("reconnecting", book.topics)
    messages = await _drain(stream.delivery.messages())
    states = [m.status.state for m in messages if m.HasField("status")]
    expected = SUBSCRIBED if state == "subscribed" else RECONNECTING
    assert states == [expected], [m for m in messages]


# -- 5. book topics on two upstream connections: each transition said twice -----------------------
@pytest.mark.parametrize("gateway_overrides", [{"ws__max_topics_per_connection": 1}])
async def test_a_book_on_two_connections_hears_each_transition_once(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway, gateway_overrides: Any
) -> None:
    """market_depth.PAIR and diff.PAIR land on different sockets when the first connection is
    nearly full (here: 1 topic a connection). One drop of upstream = one RECONNECTING, one
    RESYNCED for the book's consumer."""
    stub = stream_pb2_grpc.StreamServiceStub(channel)
    book = Recorder(stub.StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair=PAIR)))
    try:
        await book.wait(lambda: SUBSCRIBED in book.states, within=10.0)
        assert gateway.public_feed is not None
        assert len(gateway.public_feed.connections()) == 2
        await sandbox.drop_ws_connections()
        await book.wait(lambda: RESYNCED in book.states, within=10.0)
        await asyncio.sleep(1.0)
        assert book.states == [SUBSCRIBED, RECONNECTING, RESYNCED]
    finally:
        await book.close()
