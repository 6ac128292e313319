"""Fan-out: one counter's new state to every client of it on this worker.

The frame is encoded once and written to every connection as the same bytes;
nothing awaits per client, so one stuck client cannot delay the others.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from ..core.flow import Offer
from ..core.protocol import total_message
from ..core.state import CounterState
from ..metrics import Metrics
from .connection import CounterConnection
from .wire import text_frame

SHARED, OWN, REPLACE = Offer.SHARED, Offer.OWN, Offer.REPLACE


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
            offer = client.push_total(state, text, frame)
            if offer is SHARED or offer is OWN:
                written += 1
            elif offer is REPLACE:
                replaced += 1
        metrics.totals_sent.inc(written)
        if replaced:
            metrics.totals_conflated.inc(replaced)
