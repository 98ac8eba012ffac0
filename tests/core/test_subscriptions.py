"""Subscription table: known answers, and random sequences replayed onto a simulated upstream."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.subscriptions import (
    CloseConnection,
    Command,
    OpenConnection,
    Subscribe,
    SubscriptionTable,
    Unsubscribe,
)


def test_45_topics_pack_onto_20_20_5() -> None:
    table = SubscriptionTable(max_topics_per_connection=20, linger_s=2.0)
    commands: list[Command] = []
    for i in range(45):
        commands += table.acquire(f"diff.P{i:02d}_USDT", now=0.0)
    opens = [c for c in commands if isinstance(c, OpenConnection)]
    assert len(opens) == 3
    assert sorted(len(t) for t in table.connections().values()) == [5, 20, 20]
    subscribed = [t for c in commands if isinstance(c, Subscribe) for t in c.topics]
    assert subscribed == [f"diff.P{i:02d}_USDT" for i in range(45)]
    # every Subscribe follows its OpenConnection
    seen: set[str] = set()
    for command in commands:
        if isinstance(command, OpenConnection):
            seen.add(command.conn_id)
        elif isinstance(command, Subscribe):
            assert command.conn_id in seen
    table.assert_consistent()


def test_500_acquires_of_one_topic_send_one_subscribe() -> None:
    table = SubscriptionTable(linger_s=2.0)
    commands = [c for _ in range(500) for c in table.acquire("ticker.*", now=1.0)]
    assert [type(c) for c in commands] == [OpenConnection, Subscribe]
    assert table.refcount("ticker.*") == 500
    for _ in range(499):
        assert table.release("ticker.*", now=2.0) == []
    assert table.refcount("ticker.*") == 1
    table.assert_consistent()


def test_last_release_unsubscribes_only_after_linger() -> None:
    table = SubscriptionTable(linger_s=2.0)
    (_, subscribe) = table.acquire("trade.*", now=10.0)
    assert isinstance(subscribe, Subscribe)
    conn = subscribe.conn_id
    assert table.release("trade.*", now=11.0) == []
    assert table.next_deadline() == 13.0
    assert table.due(12.999) == []
    assert table.topics_of(conn) == ("trade.*",)
    table.assert_consistent()
    assert table.due(13.0) == [Unsubscribe(conn, ("trade.*",)), CloseConnection(conn)]
    assert table.connections() == {} and table.next_deadline() is None
    assert table.due(100.0) == []
    table.assert_consistent()


def test_reacquire_during_linger_cancels_it() -> None:
    table = SubscriptionTable(linger_s=2.0)
    table.acquire("diff.A_B", now=0.0)
    table.release("diff.A_B", now=1.0)
    assert table.acquire("diff.A_B", now=2.0) == []
    assert table.next_deadline() is None
    assert table.due(10.0) == []
    assert table.refcount("diff.A_B") == 1
    table.assert_consistent()


def test_zero_linger_unsubscribes_at_once_and_keeps_other_topics() -> None:
    table = SubscriptionTable(linger_s=0)
    table.acquire("a", now=0.0)
    table.acquire("b", now=0.0)
    (conn,) = table.connections()
    assert table.release("a", now=0.0) == [Unsubscribe(conn, ("a",))]
    assert table.topics_of(conn) == ("b",)


def test_release_without_acquire_is_an_error() -> None:
    table = SubscriptionTable()
    with pytest.raises(ValueError):
        table.release("x", now=0.0)
    with pytest.raises(ValueError):
        SubscriptionTable(max_topics_per_connection=0)


def test_rejected_topic_moves_and_connection_learns_capacity() -> None:
    table = SubscriptionTable(max_topics_per_connection=20, linger_s=1.0)
    for i in range(3):
        table.acquire(f"t{i}", now=0.0)
    (conn,) = table.connections()
    commands = table.rejected(conn, "t2", now=0.0)
    assert len(commands) == 2 and isinstance(commands[0], OpenConnection)
    new_conn = commands[0].conn_id
    assert commands[1] == Subscribe(new_conn, ("t2",))
    assert table.rejected(conn, "t2", now=0.0) == []  # stale rejection: ignored
    table.acquire("t3", now=0.0)  # conn learned it holds 2: t3 goes to the new one
    assert table.topics_of(new_conn) == ("t2", "t3")
    table.assert_consistent()


def test_connection_reset_resubscribes_its_topics() -> None:
    table = SubscriptionTable()
    table.acquire("a", now=0.0)
    table.acquire("b", now=0.0)
    (conn,) = table.connections()
    assert table.connection_reset(conn) == [Subscribe(conn, ("a", "b"))]
    assert table.connection_reset("nope") == []


class _Upstream:
    """What ALP would hold if it executed the commands; refuses impossible sequences."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.conns: dict[str, list[str]] = {}

    def run(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, OpenConnection):
                assert command.conn_id not in self.conns
                self.conns[command.conn_id] = []
            elif isinstance(command, Subscribe):
                topics = self.conns[command.conn_id]
                for topic in command.topics:
                    assert topic not in topics, "subscribed twice on one connection"
                    topics.append(topic)
                assert len(topics) <= self.limit, "upstream would answer Too many topics"
            elif isinstance(command, Unsubscribe):
                for topic in command.topics:
                    self.conns[command.conn_id].remove(topic)
            else:
                assert not self.conns.pop(command.conn_id), "closed a connection with topics"


_topics = st.sampled_from([f"diff.T{i}_USDT" for i in range(30)])
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), _topics, st.just(0)),
        st.tuples(st.just("release"), _topics, st.just(0)),
        st.tuples(st.just("due"), st.just(""), st.integers(0, 3)),
        st.tuples(st.just("rejected"), _topics, st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(_ops, st.integers(1, 20))
def test_random_sequences_keep_upstream_exactly_live(
    ops: list[tuple[str, str, int]], limit: int
) -> None:
    table = SubscriptionTable(max_topics_per_connection=limit, linger_s=2.0)
    upstream = _Upstream(limit)
    refs: dict[str, int] = {}
    now = 0.0
    for op, topic, step in ops:
        now += 0.5
        if op == "acquire":
            upstream.run(table.acquire(topic, now))
            refs[topic] = refs.get(topic, 0) + 1
        elif op == "release":
            if refs.get(topic, 0) == 0:
                continue
            upstream.run(table.release(topic, now))
            refs[topic] -= 1
        elif op == "due":
            now += step
            upstream.run(table.due(now))
        else:
            holder = next((c for c, ts in upstream.conns.items() if topic in ts), None)
            if holder is None:
                continue
            upstream.conns[holder].remove(topic)  # ALP refused it: it never got subscribed there
            upstream.run(table.rejected(holder, topic, now))
        table.assert_consistent()
        assert {t: n for t, n in refs.items() if n} == {
            t: table.refcount(t) for t in refs if table.refcount(t)
        }
        assert {c: tuple(ts) for c, ts in upstream.conns.items()} == table.connections()
        subscribed = [t for ts in upstream.conns.values() for t in ts]
        assert len(subscribed) == len(set(subscribed))
        assert all(len(ts) <= min(limit, 20) for ts in upstream.conns.values())
        assert {t for t, n in refs.items() if n} <= set(subscribed)
    # after every linger expires, upstream holds exactly the acquired topics
    upstream.run(table.due(now + 10))
    table.assert_consistent()
    assert {t for ts in upstream.conns.values() for t in ts} == {t for t, n in refs.items() if n}


def test_rejecting_the_only_topic_closes_the_connection() -> None:
    table = SubscriptionTable(linger_s=1.0)
    (_, subscribe) = table.acquire("a", now=0.0)
    assert isinstance(subscribe, Subscribe)
    old = subscribe.conn_id
    commands = table.rejected(old, "a", now=0.0)
    assert [type(c) for c in commands] == [OpenConnection, Subscribe, CloseConnection]
    assert commands[-1] == CloseConnection(old)
    assert old not in table.connections() and table.refcount("a") == 1
    table.assert_consistent()
