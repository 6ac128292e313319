"""Fan-out: one counter's new state to every client of it on this worker.

The frame is encoded once and written to every connection as the same bytes;
nothing awaits per client, so one stuck client cannot delay the others.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from websockets.protocol import State

from ..core.flow import Offer
from ..core.protocol import total_message
from ..core.state import CounterState
from ..metrics import Metrics
from .connection import CounterConnection, text_frame

OPEN = State.OPEN


class Fanout:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def deliver(
        self, counter: str, clients: Collection[CounterConnection], state: CounterState
    ) -> None:
        metrics = self.metrics
        if state.published_ms is not None:
            metrics.fanout_lag.observe(max(0.0, time.time() - state.published_ms / 1000))
        text = total_message(counter, state)
        frame = text_frame(text)
        written = replaced = 0
        for client in clients:
            # The common case inline, the same rules as push_total and
            # Flow.offer: a greeted, writable client without extensions and
            # nothing queued gets the shared frame at once, without two calls
            # per client in the loop that is most of a pass's cost. Everything
            # else goes through push_total.
            flow = client.flow
            if (
                client.last is not state
                and flow.greeted
                and not flow.stalled
                and client.raw
                and not client.outbox
            ):
                connection = client.connection
                if not connection.paused and connection.protocol.state is OPEN:
                    client.last = state
                    connection.transport.write(frame)
                    written += 1
                    continue
            offer = client.push_total(state, text, frame)
            if offer is Offer.WRITE:
                written += 1
            elif offer is Offer.REPLACE:
                replaced += 1
        metrics.totals_sent.inc(written)
        if replaced:
            metrics.totals_conflated.inc(replaced)
