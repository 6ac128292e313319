"""The hub's ordering rules, without Redis or sockets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ws_counter.worker.core.hub import Hub, supersedes, went_back
from ws_counter.worker.core.state import CounterState

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.delivered: list[tuple[str, CounterState, int]] = []
        self.rollbacks: list[tuple[str, str]] = []

    def add(self, counter: str) -> None:
        self.added.append(counter)

    def discard(self, counter: str) -> None:
        self.removed.append(counter)

    def deliver(self, counter: str, clients: object, state: CounterState) -> None:
        self.delivered.append((counter, state, len(clients)))  # type: ignore[arg-type]

    def rollback(self, counter: str, epoch: str) -> None:
        self.rollbacks.append((counter, epoch))


def make_hub() -> tuple[Hub[str], Recorder]:
    recorder = Recorder()
    hub: Hub[str] = Hub(recorder.deliver, recorder.rollback)
    hub.attach(recorder)
    hub.on_connection(True)
    return hub, recorder


def test_subscribes_only_while_a_counter_has_clients() -> None:
    """The first client of a counter subscribes its channel, the last one to leave unsubscribes."""
    hub, recorder = make_hub()
    group = hub.join("a", "c1")
    hub.join("a", "c2")
    hub.leave(group, "c1")
    assert recorder.removed == []
    hub.leave(group, "c2")
    assert (recorder.added, recorder.removed) == (["a"], ["a"])


def test_messages_before_the_subscription_is_confirmed_are_ignored() -> None:
    """A state from an ended subscription cannot reach clients."""
    hub, recorder = make_hub()
    hub.join("a", "c1")
    hub.on_state("a", CounterState("e", 5, 5))
    assert recorder.delivered == []


def test_only_newer_states_are_delivered_and_older_ones_report_a_rollback() -> None:
    """Within an epoch only a higher seq is delivered; an older one means Redis went back
    in time, which asks for a new epoch; a duplicate is dropped; a new epoch always passes."""
    hub, recorder = make_hub()
    hub.join("a", "c1")
    hub.on_subscribed("a")
    for seq in (3, 2, 3, 5, 4):
        hub.on_state("a", CounterState("e", seq, seq))
    hub.on_state("a", CounterState("f", 1, 1))
    assert [(s.epoch, s.seq) for _, s, _ in recorder.delivered] == [("e", 3), ("e", 5), ("f", 1)]
    assert recorder.rollbacks == [("a", "e"), ("a", "e")]


def test_after_a_resubscribe_the_announced_state_counts_like_any_other() -> None:
    """The state announced after a reconnect is delivered if newer, dropped if the same,
    and reported as a rollback if Redis lost states this worker had delivered."""
    hub, recorder = make_hub()
    hub.join("a", "c1")
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 9, 9))
    hub.on_connection(False)
    hub.on_state("a", CounterState("e", 10, 10))  # from the ended subscription: ignored
    hub.on_connection(True)
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 9, 9))  # unchanged while disconnected
    hub.on_connection(False)
    hub.on_connection(True)
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 7, 7))  # a failover lost seqs 8 and 9
    hub.on_state("a", CounterState("g", 7, 7))  # the new epoch asked for
    assert [(s.epoch, s.seq) for _, s, _ in recorder.delivered] == [("e", 9), ("g", 7)]
    assert recorder.rollbacks == [("a", "e")]


def test_a_counter_recreated_empty_is_delivered_as_a_new_epoch() -> None:
    hub, recorder = make_hub()
    hub.join("a", "c1")
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 9, 90))
    hub.on_state("a", CounterState("f", 1, 5))
    assert [(s.epoch, s.seq) for _, s, _ in recorder.delivered] == [("e", 9), ("f", 1)]
    assert recorder.rollbacks == []


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (CounterState("e", 5, 5), None, False),
        (CounterState("e", 4, 4), CounterState("e", 5, 5), True),
        (CounterState("e", 5, 6), CounterState("e", 5, 5), True),
        (CounterState("e", 5, 5), CounterState("e", 5, 5), False),
        (CounterState("e", 6, 6), CounterState("e", 5, 5), False),
        (CounterState("f", 1, 1), CounterState("e", 5, 5), False),
    ],
)
def test_went_back(new: CounterState, old: CounterState | None, expected: bool) -> None:
    assert went_back(new, old) is expected


def test_supersedes() -> None:
    """A state supersedes another if it is the first, of a new epoch, or later."""
    assert supersedes(CounterState("e", 1, 0), None)
    assert supersedes(CounterState("f", 1, 0), CounterState("e", 9, 0))
    assert supersedes(CounterState("e", 2, 0), CounterState("e", 1, 0))
    assert not supersedes(CounterState("e", 1, 0), CounterState("e", 1, 0))


class Loop:
    """A stand-in for the event loop's call_soon: callbacks run when the test says."""

    def __init__(self) -> None:
        self.ready: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.ready.append(callback)

    def run_once(self) -> None:
        ready, self.ready = self.ready, []
        for callback in ready:
            callback()


def conflating_hub() -> tuple[Hub[str], Recorder, Loop]:
    recorder, loop = Recorder(), Loop()
    hub: Hub[str] = Hub(recorder.deliver, recorder.rollback, loop.call_soon)
    hub.attach(recorder)
    hub.on_connection(True)
    hub.join("a", "c1")
    hub.on_subscribed("a")
    return hub, recorder, loop


def test_a_lone_update_is_delivered_on_the_next_turn_once() -> None:
    """One state makes one pass due at once; nothing waits for a tick."""
    hub, recorder, loop = conflating_hub()
    hub.on_state("a", CounterState("e", 1, 1))
    assert recorder.delivered == [] and len(loop.ready) == 1
    loop.run_once()
    assert recorder.delivered == [("a", CounterState("e", 1, 1), 1)]
    assert loop.ready == []


def test_states_that_arrive_before_the_pass_are_folded_into_the_newest() -> None:
    """Many states read in one turn give one pass, with the newest state only."""
    hub, recorder, loop = conflating_hub()
    for seq in range(1, 101):
        hub.on_state("a", CounterState("e", seq, seq * 2))
    assert len(loop.ready) == 1
    loop.run_once()
    assert recorder.delivered == [("a", CounterState("e", 100, 200), 1)]


def test_a_state_during_a_pass_makes_the_next_pass_start_from_the_newest() -> None:
    """A state taken while a pass is under way replaces the newest; the next pass takes it."""
    recorder, loop = Recorder(), Loop()
    arriving = [CounterState("e", 2, 2), CounterState("e", 3, 3)]

    def deliver(counter: str, clients: object, state: CounterState) -> None:
        recorder.deliver(counter, clients, state)
        while arriving:  # states read while this pass writes
            hub.on_state("a", arriving.pop(0))

    hub: Hub[str] = Hub(deliver, recorder.rollback, loop.call_soon)
    hub.attach(recorder)
    hub.on_connection(True)
    hub.join("a", "c1")
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 1, 1))
    loop.run_once()
    assert [state.seq for _, state, _ in recorder.delivered] == [1]
    assert len(loop.ready) == 1, "one next pass, not one per state"
    loop.run_once()
    assert [state.seq for _, state, _ in recorder.delivered] == [1, 3]


def test_a_pass_for_a_counter_without_clients_any_more_delivers_nothing() -> None:
    """The last client left before the due pass ran: nothing is written."""
    hub, recorder, loop = conflating_hub()
    group = hub.join("a", "c2")
    hub.on_state("a", CounterState("e", 1, 1))
    hub.leave(group, "c1")
    hub.leave(group, "c2")
    loop.run_once()
    assert recorder.delivered == []
