"""A stream never waits in silence: while ALP cannot be reached (or will not log the account in)
consumers hear RECONNECTING at once, RESYNCED when it is back, and their data after that; a topic
ALP refused is asked afresh once it has left the table. Real sandbox, real gateways, real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import grpc
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox
from tests.cluster.test_topic_share import Reader, trade_frame
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of
from tests.gateway.test_streams import eventually, place

RECONNECTING = stream_pb2.STREAM_STATE_RECONNECTING
RESYNCED = stream_pb2.STREAM_STATE_RESYNCED
SUBSCRIBED = stream_pb2.STREAM_STATE_SUBSCRIBED


class Gate:
    """A TCP forwarder to the sandbox's WebSocket port: closed, it drops every connection at once
    (ALP unreachable); open, it passes bytes both ways."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = False
        self.refused = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            self.refused += 1
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            running = asyncio.get_running_loop().create_task(task)
            self._pipes.add(running)
            running.add_done_callback(self._pipes.discard)

    async def __aenter__(self) -> Gate:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await self._server.wait_closed()


async def test_a_trade_stream_hears_reconnecting_while_alp_is_unreachable(
    sandbox: Sandbox,
) -> None:
    target = urlsplit(sandbox.ws_url)
    async with Gate(target.port or 0) as gate:
        config = gateway_config(
            sandbox, upstream__ws_url=f"ws://127.0.0.1:{gate.port}{target.path}"
        )
        async with (
            Gateway(config) as gateway,
            grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
        ):
            reader = Reader(channel, "BTC_USDT")
            try:
                await reader.wait(lambda: RECONNECTING in reader.state_list())
                await eventually(lambda: gate.refused >= 4)  # many failed connects meanwhile...
                assert reader.state_list() == [RECONNECTING]  # ...and one notice, not four
                late = Reader(channel, "BTC_USDT")  # a consumer joining now hears it too
                await late.wait(lambda: late.state_list() == [RECONNECTING])
                gate.open = True
                for each in (reader, late):
                    await each.wait(lambda e=each: RESYNCED in e.state_list(), within=5.0)  # type: ignore[misc]
                assert reader.state_list() == [RECONNECTING, RESYNCED]
                assert await sandbox.inject_ws_frame(
                    trade_frame("BTC_USDT", 77), topic="trade.BTC_USDT"
                )
                await reader.wait(lambda: reader.trades == [77])
                await late.wait(lambda: late.trades == [77])
                await late.close()
            finally:
                await reader.close()


async def test_a_private_stream_hears_reconnecting_while_auth_is_down(
    sandbox: Sandbox,
) -> None:
    """POST /auth answers 500: the login is retried with backoff; the consumer hears RECONNECTING
    once (not silence, not one per attempt), RESYNCED when /auth is back, then its updates."""
    async with (
        Gateway(gateway_config(sandbox)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
    ):
        sandbox.faults.update(
            {"error_rate": 1.0, "error_status": 500, "error_path_prefix": "/auth"}
        )
        sandbox.revoke_tokens()  # the token REST fetched at start is refused on the socket
        call = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderUpdates(
            stream_pb2.StreamOrderUpdatesRequest(), metadata=(("x-alp-account", "demo"),)
        )
        states: list[int] = []
        orders: list[int] = []

        async def read() -> None:
            async for message in call:
                if message.HasField("status"):
                    states.append(message.status.state)
                orders.extend(o.order_id for o in message.orders)

        task = asyncio.get_running_loop().create_task(read())
        try:
            await eventually(lambda: states == [RECONNECTING])
            feed = gateway.private_feeds["demo"]
            await eventually(lambda: feed.login_failures >= 3)
            assert states == [RECONNECTING]
            sandbox.faults.update({"error_rate": 0.0})
            await eventually(lambda: states == [RECONNECTING, RESYNCED], within=10.0)
            order_id = await place(channel, common_pb2.ORDER_SIDE_BUY, "0.01", "20001")
            await eventually(lambda: order_id in orders)
        finally:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await task


async def _first_answer(channel: grpc.aio.Channel, pair: str) -> str:
    """The first thing a StreamTrades call for `pair` hears: a status name or the error code."""
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
        stream_pb2.StreamTradesRequest(pairs=[pair])
    )
    try:
        async with asyncio.timeout(5.0):
            async for message in call:
                if message.HasField("status"):
                    return stream_pb2.StreamState.Name(message.status.state)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    finally:
        call.cancel()
    return "ended"


async def test_a_refused_topic_is_asked_afresh_once_it_left_the_table(sandbox: Sandbox) -> None:
    """ALP refuses a pair it does not list; once the topic has left the table (after the linger)
    the refusal is forgotten, so a pair ALP lists later streams without a gateway restart."""
    async with (
        Gateway(gateway_config(sandbox)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
    ):
        assert await _first_answer(channel, "NEW_USDT") == "NOT_FOUND"
        feed = gateway.public_feed
        assert feed is not None
        await eventually(lambda: "trade.NEW_USDT" not in str(feed.connections()), within=3.0)
        sandbox.ws._pairs.add("NEW_USDT")  # ALP lists the pair now (the sandbox's WS listing)
        try:
            assert await _first_answer(channel, "NEW_USDT") == "STREAM_STATE_SUBSCRIBED"
        finally:
            sandbox.ws._pairs.discard("NEW_USDT")


async def _statuses(call: object, within: float) -> list[int]:
    """Every status a stream reports within `within` seconds (then it is cancelled)."""
    states: list[int] = []

    async def read() -> None:
        async for message in call:  # type: ignore[attr-defined]
            if message.HasField("status"):
                states.append(message.status.state)

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await read()
    call.cancel()  # type: ignore[attr-defined]
    return states


async def test_a_topic_asked_again_after_its_linger_says_subscribed_once(
    sandbox: Sandbox,
) -> None:
    """The linger ended and the topic was unsubscribed upstream: a new stream of it hears one
    SUBSCRIBED (the new subscribe's ack), not an early one from stale state and then another."""
    async with (
        Gateway(gateway_config(sandbox)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
    ):
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        feed = gateway.public_feed
        assert feed is not None
        for _ in range(3):
            call = stub.StreamTrades(stream_pb2.StreamTradesRequest(pairs=["ETH_USDT"]))
            assert await _statuses(call, 0.5) == [SUBSCRIBED]
            await eventually(lambda: not feed.connections().get("pub-1"), within=3.0)
            await asyncio.sleep(0.1)  # the unsubscribe went out and was answered


async def test_a_private_stream_after_the_socket_closed_says_subscribed_not_resynced(
    sandbox: Sandbox,
) -> None:
    """The account's socket closes after its last consumer left (the linger); the next consumer
    opens a new one and hears SUBSCRIBED: nothing was lost for it, so no RESYNCED."""
    async with (
        Gateway(gateway_config(sandbox)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
    ):
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        for _ in range(3):
            call = stub.StreamOrderUpdates(
                stream_pb2.StreamOrderUpdatesRequest(), metadata=(("x-alp-account", "demo"),)
            )
            assert await _statuses(call, 0.6) == [SUBSCRIBED]
            feed = gateway.private_feeds["demo"]
            await eventually(lambda f=feed: not f.open, within=3.0)  # type: ignore[misc]


async def _error_of(call: object) -> grpc.aio.AioRpcError:
    try:
        async with asyncio.timeout(5.0):
            async for _ in call:  # type: ignore[attr-defined]
                pass
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the stream did not end with an error")


async def test_tickers_of_a_pair_alp_does_not_list_end_not_found(sandbox: Sandbox) -> None:
    """Tickers ride on `ticker.*`, which ALP never refuses: a pair it does not list used to hear
    SUBSCRIBED and then nothing, for ever. It ends NOT_FOUND at once, like its other topics."""
    async with (
        Gateway(gateway_config(sandbox)) as gateway,
        grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
    ):
        stub = stream_pb2_grpc.StreamServiceStub(channel)
        calls = [
            stub.StreamTickers(stream_pb2.StreamTickersRequest(pairs=["BTC_USDT", "ZZZ_USDT"])),
            stub.Subscribe(
                stream_pb2.SubscribeRequest(
                    topics=[
                        stream_pb2.Topic(channel=stream_pb2.CHANNEL_TRADES, pair="BTC_USDT"),
                        stream_pb2.Topic(channel=stream_pb2.CHANNEL_TICKERS, pair="ZZZ_USDT"),
                    ]
                )
            ),
        ]
        for call in calls:
            details = details_of(await _error_of(call))
            assert details.code == grpc.StatusCode.NOT_FOUND, details
            assert details.error_info is not None
            assert details.error_info.reason == "TOPIC_NOT_FOUND"
            assert "ZZZ_USDT" in details.error_info.metadata["topic"]
        listed = stub.StreamTickers(stream_pb2.StreamTickersRequest(pairs=["BTC_USDT"]))
        assert await _statuses(listed, 0.5) == [SUBSCRIBED]
        every = stub.StreamTickers(stream_pb2.StreamTickersRequest())  # all pairs: no check
        assert await _statuses(every, 0.5) == [SUBSCRIBED]
        streams = gateway.streams
        assert streams is not None
        await eventually(lambda: streams.active_streams == 0)
