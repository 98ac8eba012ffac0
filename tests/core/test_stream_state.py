"""Topic states, scripted: what consumers are told on loss, ack, re-ack and refusal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.stream_state import StreamState, TopicStates, coalesce


def test_first_ack_is_subscribed_then_a_loss_and_a_reack_is_resynced() -> None:
    states = TopicStates()
    assert states.acknowledged(["a", "b"]) == [(StreamState.SUBSCRIBED, ("a", "b"))]
    assert states.is_live("a")
    assert states.lost(["a", "b"]) == [(StreamState.RECONNECTING, ("a", "b"))]
    assert not states.is_live("a")
    assert states.acknowledged(["a", "c"]) == [
        (StreamState.RESYNCED, ("a",)),
        (StreamState.SUBSCRIBED, ("c",)),
    ]
    assert states.acknowledged(["b"]) == [(StreamState.RESYNCED, ("b",))]


def test_nothing_lost_says_nothing_and_a_refused_topic_is_forgotten() -> None:
    states = TopicStates()
    assert states.lost([]) == []
    states.lost(["x"])
    states.refused("x")
    assert states.acknowledged(["x"]) == [(StreamState.SUBSCRIBED, ("x",))]
    states.unsubscribed(["x"])
    assert not states.is_live("x")


def test_unreachable_tells_waiting_topics_once_and_their_ack_is_resynced() -> None:
    states = TopicStates()
    states.acknowledged(["live"])
    assert states.unreachable(["live", "waiting"]) == [(StreamState.RECONNECTING, ("waiting",))]
    assert states.unreachable(["waiting"]) == []  # every failed attempt after: silence
    assert states.is_resyncing("waiting") and not states.is_resyncing("live")
    assert states.acknowledged(["waiting"]) == [(StreamState.RESYNCED, ("waiting",))]
    assert states.unreachable(["waiting"]) == []  # live now: a loss is `lost`, not this


def test_states_compare_as_their_wire_text() -> None:
    assert StreamState.RECONNECTING == "reconnecting"


def test_a_handover_of_a_books_two_topics_is_one_reconnecting_and_one_resynced() -> None:
    lost, resynced = StreamState.RECONNECTING, StreamState.RESYNCED
    raw = [(lost, ("depth",)), (resynced, ("depth",)), (lost, ("diff",)), (resynced, ("diff",))]
    assert coalesce(raw) == [(lost, ("depth", "diff")), (resynced, ("depth", "diff"))]


def test_coalesce_keeps_fresh_subscriptions_and_topics_that_end_lost() -> None:
    lost, live = StreamState.RECONNECTING, StreamState.SUBSCRIBED
    raw = [(live, ("a",)), (lost, ("b",)), (live, ("c",)), (lost, ("a",))]
    assert coalesce(raw) == [(lost, ("b",)), (live, ("c",)), (lost, ("a",))]
    assert coalesce([]) == []


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(StreamState)), st.lists(st.sampled_from("abcd"), min_size=1)
        ),
        max_size=12,
    )
)
def test_coalesce_keeps_each_topics_first_loss_and_final_state(
    raw: list[tuple[StreamState, list[str]]],
) -> None:
    notices = [(state, tuple(topics)) for state, topics in raw]
    out = coalesce(notices)
    said = [(state, t) for state, topics in out for t in topics]
    for topic in {t for _, topics in notices for t in topics}:
        story = [state for state, topics in notices for t in topics if t == topic]
        told = [state for state, t in said if t == topic]
        assert told[-1] is story[-1]  # consumers end where the topic ended
        if story[0] is StreamState.RECONNECTING:
            assert told[0] is StreamState.RECONNECTING  # a loss is never hidden
        assert len(told) <= 2
