"""Which clients of this worker follow which counter, and the newest state of each.

Ordering rules, the reason this module exists:

* States reach a worker only through its pub/sub subscription, including the
  snapshot a worker asks for after (re)subscribing (store.announce publishes
  it on the channel). Redis delivers one connection's messages in the order it
  published them, so a state that arrives later is never older. There is no
  separate snapshot read that an older update could overtake.
* Until Redis confirms a (re)subscription, messages for the counter are
  ignored: they belong to a subscription that has ended. On a Redis Cluster a
  single counter's subscription can end (its slot moved, its shard failed
  over); ``on_lost`` then waits for the new one the same way.
* The first state after a confirmation is authoritative, even when its seq is
  lower (Redis lost data and the epoch changed). After that a state is taken
  when it has a new epoch or a higher seq; duplicates, such as another worker's
  announcement of a state already seen, are dropped.
* A client joining a counter whose state is known gets that state at once, in
  the same step that adds it to the group, so every later delivery is newer.
* A state of the same epoch that is older than one already delivered (or has
  the same seq and another total) means Redis went back in time: a failover
  dropped states its replica never got. It is not delivered; ``on_rollback``
  asks for a new epoch, whose state then reaches everyone as a visible reset.

Conflation rules, which keep fan-out fresh at any increment rate:

* A counter's states reach its clients in *passes*: one call of ``deliver``
  with the counter's newest state for all its clients.
* A state that is taken while a pass is due (scheduled, not yet run) or under
  way only replaces the counter's newest state. The due pass delivers the
  newest; a state taken during a pass makes the next pass due, which starts
  from the newest when this one ends. Superseded states are never written.
* A lone state makes a pass due at once, through ``schedule`` (the event
  loop's ``call_soon``): the next turn of the loop, with no tick and no added
  delay. Every state already read from Redis by then is folded into it.
* So the time until every client holds the newest state is at most about two
  passes, whatever the increment rate: the one under way and the next.
* A pass skips a client that already holds the state (it got it on joining).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .state import CounterState

C = TypeVar("C")


class SubscriptionLike(Protocol):
    def add(self, counter: str) -> None: ...

    def discard(self, counter: str) -> None: ...


class StateListener(Protocol):
    """What a subscription tells: the Hub implements it, and is passed as one object."""

    def on_subscribed(self, counter: str) -> None:
        """Redis confirmed the subscription to ``counter``; its snapshot follows."""

    def on_state(self, counter: str, state: CounterState) -> None:
        """A state of ``counter``, in the order Redis published them."""

    def on_lost(self, counter: str) -> None:
        """The subscription to ``counter`` ended (its Redis Cluster shard moved or failed)."""

    def on_connection(self, up: bool) -> None:
        """The subscription as a whole is up, or lost."""


@dataclass(eq=False)
class CounterGroup(Generic[C]):
    """This worker's clients of one counter."""

    name: str
    clients: set[C] = field(default_factory=set)
    state: CounterState | None = None
    awaiting_subscription: bool = True
    authoritative_next: bool = False
    pass_due: bool = False


def supersedes(new: CounterState, old: CounterState | None) -> bool:
    """Whether ``new`` is a later state than ``old`` on the same subscription."""
    return old is None or new.epoch != old.epoch or new.seq > old.seq


def went_back(new: CounterState, old: CounterState | None) -> bool:
    """Whether ``new`` rewrites history already delivered in the same epoch."""
    if old is None or new.epoch != old.epoch:
        return False
    return new.seq < old.seq or (new.seq == old.seq and new.total != old.total)


class Hub(Generic[C]):
    """Routes counter states from the subscription to the clients of each counter."""

    def __init__(
        self,
        deliver: Callable[[str, Collection[C], CounterState], None],
        on_rollback: Callable[[str, str], None] = lambda counter, epoch: None,
        schedule: Callable[[Callable[[], None]], object] = lambda callback: callback(),
        on_connection_change: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self._deliver = deliver
        self._on_rollback = on_rollback
        self._on_connection_change = on_connection_change
        self._schedule = schedule
        self._groups: dict[str, CounterGroup[C]] = {}
        self._subscription: SubscriptionLike | None = None
        self.connected = False

    def attach(self, subscription: SubscriptionLike) -> None:
        self._subscription = subscription

    def join(self, counter: str, client: C) -> CounterGroup[C]:
        group = self._groups.get(counter)
        if group is None:
            group = self._groups[counter] = CounterGroup(counter)
            if self._subscription is not None:
                self._subscription.add(counter)
        group.clients.add(client)
        return group

    def leave(self, group: CounterGroup[C], client: C) -> None:
        group.clients.discard(client)
        if not group.clients and self._groups.get(group.name) is group:
            del self._groups[group.name]
            if self._subscription is not None:
                self._subscription.discard(group.name)

    def on_subscribed(self, counter: str) -> None:
        group = self._groups.get(counter)
        if group is not None:
            group.awaiting_subscription = False
            group.authoritative_next = True

    def on_state(self, counter: str, state: CounterState) -> None:
        group = self._groups.get(counter)
        if group is None or group.awaiting_subscription:
            return
        if went_back(state, group.state):
            self._on_rollback(counter, state.epoch)
            return
        if not (group.authoritative_next or supersedes(state, group.state)):
            return
        if group.state == state:
            group.authoritative_next = False
            return
        group.authoritative_next = False
        group.state = state
        if not group.pass_due:
            group.pass_due = True
            self._schedule(lambda: self._pass(group))

    def _pass(self, group: CounterGroup[C]) -> None:
        """Deliver the group's newest state to all its clients, if it still has any."""
        group.pass_due = False
        if group.state is not None and self._groups.get(group.name) is group:
            self._deliver(group.name, group.clients, group.state)

    def on_lost(self, counter: str) -> None:
        """The subscription to one counter ended (its Redis Cluster shard moved or died)."""
        group = self._groups.get(counter)
        if group is not None:
            group.awaiting_subscription = True

    def on_connection(self, up: bool) -> None:
        changed, self.connected = up != self.connected, up
        if changed:
            self._on_connection_change(up)
        if not up:
            for group in self._groups.values():
                group.awaiting_subscription = True
