"""Every message Redis sends on a subscribed connection, dispatched by one table for both
subscription kinds (one Redis, and a Redis Cluster shard)."""

from __future__ import annotations

from typing import Any

import pytest

from ws_counter.worker.core.state import CounterState
from ws_counter.worker.store.keys import CONTROL_CHANNEL, channel_name
from ws_counter.worker.store.pubsub import PubSubConnection

pytestmark = pytest.mark.unit

STATE = CounterState(epoch="e1", seq=3, total=12)
PAYLOAD = "e1 3 12 1796400000000"


class Recorder(PubSubConnection):
    """A connection that records which hook each message reached."""

    def __init__(self, *, sharded: bool) -> None:
        super().__init__(CONTROL_CHANNEL, 1.0, lambda _: None, sharded=sharded)
        self.counters = {"votes"}
        self.heard: list[tuple[str, Any]] = []

    def on_up(self) -> None:
        super().on_up()
        self.heard.append(("up", None))

    def on_control_dropped(self) -> None:
        self.heard.append(("control_dropped", None))

    def on_confirmed(self, counter: str) -> None:
        self.heard.append(("confirmed", counter))

    def on_state(self, counter: str, state: CounterState) -> None:
        self.heard.append(("state", (counter, state)))

    def on_dropped(self, counter: str) -> None:
        self.heard.append(("dropped", counter))


VOTES, OTHER = channel_name("votes"), channel_name("other")


def message(kind: str, channel: str | None, data: Any = 1) -> dict[str, Any]:
    return {"type": kind, "pattern": None, "channel": channel, "data": data}


CASES = [
    # (type on one Redis, on a cluster shard), channel, data, what is heard
    (("subscribe", "ssubscribe"), CONTROL_CHANNEL, 1, [("up", None)]),
    (("unsubscribe", "sunsubscribe"), CONTROL_CHANNEL, 0, [("control_dropped", None)]),
    (("subscribe", "ssubscribe"), VOTES, 2, [("confirmed", "votes")]),
    (("message", "smessage"), VOTES, PAYLOAD, [("state", ("votes", STATE))]),
    (("unsubscribe", "sunsubscribe"), VOTES, 1, [("dropped", "votes")]),
    # A counter let go since: its late messages and confirmations are nobody's.
    (("message", "smessage"), OTHER, PAYLOAD, []),
    (("subscribe", "ssubscribe"), OTHER, 2, []),
    (("unsubscribe", "sunsubscribe"), OTHER, 0, []),
    # Not a counter's channel at all.
    (("message", "smessage"), "elsewhere", "x", []),
    # The reply to the connection's own PING (RESP2, RESP3): no channel, only heard.
    (("pong", "pong"), None, "", []),
    (("P", "P"), None, "PONG", []),
    # Never asked for (patterns), or unknown: logged once, never a crash.
    (("pmessage", "pmessage"), VOTES, "x", []),
    (("psubscribe", "psubscribe"), None, 1, []),
    (("whatever", "whatever"), None, None, []),
    # A malformed state is logged and dropped.
    (("message", "smessage"), VOTES, "not a state", []),
]


@pytest.mark.parametrize("sharded", [False, True], ids=["one-redis", "cluster-shard"])
@pytest.mark.parametrize(("kinds", "channel", "data", "expected"), CASES)
def test_every_message_type_reaches_its_hook_or_none(
    sharded: bool, kinds: tuple[str, str], channel: str | None, data: Any, expected: list[Any]
) -> None:
    connection = Recorder(sharded=sharded)
    connection.dispatch(message(kinds[sharded], channel, data))
    assert connection.heard == expected


def test_a_message_without_type_or_channel_is_dropped() -> None:
    connection = Recorder(sharded=True)
    connection.dispatch({})
    connection.dispatch({"type": "smessage"})
    assert connection.heard == []
