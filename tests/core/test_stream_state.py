"""Topic states, scripted: what consumers are told on loss, ack, re-ack and refusal."""

from __future__ import annotations

from gateway.core.stream_state import StreamState, TopicStates


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


def test_states_compare_as_their_wire_text() -> None:
    assert StreamState.RECONNECTING == "reconnecting"
