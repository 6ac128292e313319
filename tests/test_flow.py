"""The flow-control state machine of one connection, without sockets or clocks."""

from __future__ import annotations

import pytest

from ws_counter.worker.core.flow import Flow, Offer

pytestmark = pytest.mark.unit

OPEN, PAUSED = {"open": True, "paused": False}, {"open": True, "paused": True}
CLOSING = {"open": False, "paused": False}


def test_the_first_offer_greets_the_connection() -> None:
    """Until a first total is offered the adapter must send a snapshot of its own."""
    flow: Flow[str] = Flow(window=4)
    assert not flow.greeted
    assert flow.offer("t1", **OPEN) is Offer.OWN
    assert flow.greeted
    assert flow.offer("t2", **OPEN) is Offer.SHARED


@pytest.mark.parametrize(
    ("steps", "expected", "held"),
    [
        # A writable connection is greeted with its own frame, then gets the shared one.
        ([("t1", OPEN), ("t2", OPEN), ("t3", OPEN)], [Offer.OWN, Offer.SHARED, Offer.SHARED], None),
        # A paused transport stalls the connection and holds the total.
        ([("t1", OPEN), ("t2", PAUSED)], [Offer.OWN, Offer.STALL], "t2"),
        # While stalled, a newer total replaces the held one: never a backlog.
        (
            [("t1", PAUSED), ("t2", PAUSED), ("t3", OPEN)],
            [Offer.STALL, Offer.REPLACE, Offer.REPLACE],
            "t3",
        ),
        # A closing connection drops totals instead of holding them.
        ([("t1", OPEN), ("t2", CLOSING)], [Offer.OWN, Offer.CLOSED], None),
        ([("t1", CLOSING)], [Offer.CLOSED], None),
    ],
)
def test_offers(
    steps: list[tuple[str, dict[str, bool]]], expected: list[Offer], held: str | None
) -> None:
    """Each total offered is written, held, replaces the held one or is dropped."""
    flow: Flow[str] = Flow(window=4)
    assert [flow.offer(total, **state) for total, state in steps] == expected
    assert flow.held == held


def test_a_drain_hands_back_the_newest_held_total_once() -> None:
    """After the transport drains, the newest held total is written and the stall ends."""
    flow: Flow[str] = Flow(window=4)
    flow.offer("t1", **PAUSED)
    flow.offer("t2", **PAUSED)
    assert flow.drained() == "t2"
    assert not flow.stalled
    assert flow.held is None
    assert flow.offer("t3", **OPEN) is Offer.SHARED


def test_a_drain_with_nothing_held_just_ends_the_stall() -> None:
    """A drain hands back what was held; a second drain, with nothing held, hands back None."""
    flow: Flow[str] = Flow(window=4)
    flow.offer("t1", **PAUSED)
    assert flow.drained() == "t1"
    assert flow.drained() is None


def test_a_stall_hold_is_not_a_second_stall() -> None:
    """Only the first paused offer starts a drain wait; later ones hold or replace."""
    flow: Flow[str] = Flow(window=4)
    assert flow.offer("t1", **PAUSED) is Offer.STALL
    flow.drained()
    assert flow.offer("t2", **PAUSED) is Offer.STALL
    assert flow.offer("t3", **PAUSED) is Offer.REPLACE


def test_the_unacked_window_pauses_and_resumes_reading() -> None:
    """Reading pauses when the window fills and resumes as soon as one outcome returns."""
    flow: Flow[str] = Flow(window=3)
    assert [flow.sent() for _ in range(3)] == [False, False, True]
    assert flow.unacked == 3
    assert flow.settled() is True
    assert flow.sent() is True
    assert [flow.settled() for _ in range(3)] == [True, True, True]
    assert flow.unacked == 0


def test_a_slow_client_mid_pass_gets_only_the_newest_while_others_get_each_pass() -> None:
    """Across passes a stalled client holds just the newest total; writable ones get each pass."""
    fast: Flow[str] = Flow(window=4)
    slow: Flow[str] = Flow(window=4)
    passes = [("t1", PAUSED), ("t2", PAUSED), ("t3", PAUSED)]
    offers = [(fast.offer(total, **OPEN), slow.offer(total, **state)) for total, state in passes]
    assert offers == [
        (Offer.OWN, Offer.STALL),
        (Offer.SHARED, Offer.REPLACE),
        (Offer.SHARED, Offer.REPLACE),
    ]
    assert slow.drained() == "t3"


def test_a_total_behind_a_queued_frame_is_queued_too() -> None:
    """The shared frame may not overtake a frame queued in the same turn (an ack, say)."""
    flow: Flow[str] = Flow(window=4)
    flow.offer("t1", **OPEN)
    assert flow.queue() is True
    assert flow.queue() is False  # one write per turn, scheduled by the first
    assert flow.offer("t2", **OPEN) is Offer.OWN
    flow.flushed()
    assert flow.offer("t3", **OPEN) is Offer.SHARED


def test_a_connection_with_extensions_never_gets_the_shared_frame() -> None:
    """With permessage-deflate a frame differs per connection: every total is its own."""
    flow: Flow[str] = Flow(window=4, shareable=False)
    assert [flow.offer(total, **OPEN) for total in ("t1", "t2")] == [Offer.OWN, Offer.OWN]
