"""The hub's ordering rules, without Redis or sockets."""

from __future__ import annotations

from worker.hub import Hub, supersedes
from worker.protocol import CounterState


class Recorder:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.delivered: list[tuple[str, CounterState, int]] = []

    def add(self, counter: str) -> None:
        self.added.append(counter)

    def discard(self, counter: str) -> None:
        self.removed.append(counter)

    def deliver(self, counter: str, clients: object, state: CounterState) -> None:
        self.delivered.append((counter, state, len(clients)))  # type: ignore[arg-type]


def make_hub() -> tuple[Hub[str], Recorder]:
    recorder = Recorder()
    hub: Hub[str] = Hub(recorder.deliver)
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


def test_older_and_duplicate_states_are_dropped_after_the_first() -> None:
    """Within an epoch only a higher seq is delivered; a new epoch always is."""
    hub, recorder = make_hub()
    hub.join("a", "c1")
    hub.on_subscribed("a")
    for seq in (3, 2, 3, 5, 4):
        hub.on_state("a", CounterState("e", seq, seq))
    hub.on_state("a", CounterState("f", 1, 1))
    assert [(s.epoch, s.seq) for _, s, _ in recorder.delivered] == [("e", 3), ("e", 5), ("f", 1)]


def test_first_state_after_resubscribe_is_authoritative() -> None:
    """After a reconnect the announced state is taken even if its seq is lower."""
    hub, recorder = make_hub()
    hub.join("a", "c1")
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 9, 9))
    hub.on_connection(False)
    hub.on_state("a", CounterState("e", 10, 10))
    hub.on_connection(True)
    hub.on_subscribed("a")
    hub.on_state("a", CounterState("e", 7, 7))
    hub.on_state("a", CounterState("e", 6, 6))
    assert [s.seq for _, s, _ in recorder.delivered] == [9, 7]


def test_supersedes() -> None:
    """A state supersedes another if it is the first, of a new epoch, or later."""
    assert supersedes(CounterState("e", 1, 0), None)
    assert supersedes(CounterState("f", 1, 0), CounterState("e", 9, 0))
    assert supersedes(CounterState("e", 2, 0), CounterState("e", 1, 0))
    assert not supersedes(CounterState("e", 1, 0), CounterState("e", 1, 0))
