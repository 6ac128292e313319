"""Clients that write the history: the load test's client (over the client library's core),
with every increment's outcome and every total it was shown kept as they happen."""

from __future__ import annotations

import time

from ws_counter.tools.loadtest.loadclient import LoadClient, Pending
from ws_counter.tools.loadtest.tally import Tally
from ws_counter.worker.core.state import CounterState
from ws_counter_client import core
from ws_counter_client.results import Ack, CounterClientError, IncrementRefused, Total

from .history import History, Op, Outcome, Seen

# Sessions resent until answered: no bound on resends or reconnects, so every
# increment ends acknowledged, refused for good, or unknown only when the run
# closes it. Backoff from 50 ms to 1 s keeps the time to resume short.
FAULT_POLICY = core.Policy(
    backoff=(0.05, 1.0), max_in_flight=None, max_resends=None, max_reconnects=None
)


class RecordingClient(LoadClient):
    """A load-test client that also appends to ``history``."""

    def __init__(self, number: int, history: History, tally: Tally, url: str, counter: str) -> None:
        super().__init__(tally, url, counter, "session", f"c{number}", FAULT_POLICY)
        self.number = number
        self.history = history

    def _acknowledged(self, pending: Pending, ack: Ack, now: float) -> None:
        super()._acknowledged(pending, ack, now)
        state = None
        if ack.epoch is not None and ack.seq is not None and ack.total is not None:
            state = CounterState(ack.epoch, ack.seq, ack.total)
        self.history.ops.append(
            Op(self.number, pending.by, pending.sent_at, Outcome.ACKED, now, state)
        )

    def _failed(self, pending: Pending, error: CounterClientError) -> None:
        super()._failed(pending, error)
        outcome = Outcome.REFUSED if isinstance(error, IncrementRefused) else Outcome.UNKNOWN
        self.history.ops.append(
            Op(self.number, pending.by, pending.sent_at, outcome, time.monotonic())
        )

    def _show(self, total: Total, now: float) -> None:
        super()._show(total, now)
        self.history.seen.append(
            Seen(self.number, now, CounterState(total.epoch, total.seq, total.total))
        )
