"""One client connection: its flow control carried out on a websockets connection.

Every decision about what to write is ``ws_counter.worker.core.flow``'s; this module does
what it answers, through ``ws_counter.worker.server.wire`` for everything that reaches
past websockets' documented API. What the worker writes to a connection in one
turn of the event loop (its acks, an error, its own total) goes out in one
write: ``send_text`` queues a frame and the first one queued schedules the
write for the end of the turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

from websockets.asyncio.server import ServerConnection

from ..core.auth import Grant
from ..core.flow import Flow, Offer
from ..core.protocol import CloseCode, CounterRoute, missed_updates, total_message
from ..core.ratelimit import TokenBucket
from ..core.state import CounterState
from ..settings import Settings
from . import wire
from .context import WorkerContext

log = logging.getLogger("ws_counter.worker")


class CounterConnection:
    """A WebSocket connection, its counter, its grant, its rate limit and its Flow."""

    __slots__ = (
        "bucket",
        "connection",
        "counter",
        "first_total",
        "flow",
        "grant",
        "last",
        "loop",
        "outbox",
        "room",
        "since",
        "worker",
    )

    def __init__(
        self, worker: WorkerContext, connection: ServerConnection, route: CounterRoute, grant: Grant
    ) -> None:
        self.worker = worker
        self.connection = connection
        self.counter = route.counter
        self.since = route.since
        self.grant = grant
        settings = worker.settings
        self.bucket = rate_limit_bucket(settings)
        # Without extensions a server frame is the same bytes for every
        # connection, so one serialized frame can be written to all of them.
        self.flow: Flow[str] = Flow(
            settings.max_pending_increments, shareable=not wire.has_extensions(connection)
        )
        self.first_total = asyncio.Event()
        # Set while the worker may read this connection's next message.
        self.room = asyncio.Event()
        self.room.set()
        # The state last offered: a pass skips a client that already holds it.
        self.last: CounterState | None = None
        # Messages queued in this turn of the loop, written together at its end.
        self.outbox: list[str] = []
        self.loop = asyncio.get_running_loop()

    def send_text(self, text: str) -> None:
        """Queue a message for this turn's write."""
        if self.flow.queue():
            self.loop.call_soon(self._flush)
        self.outbox.append(text)

    def _flush(self) -> None:
        texts, self.outbox = self.outbox, []
        self.flow.flushed()
        connection = self.connection
        if not wire.is_open(connection):
            return
        if self.flow.shareable:
            wire.write(connection, b"".join([wire.text_frame(text) for text in texts]))
        else:
            for text in texts:
                wire.write_text(connection, text)

    def push_total(self, state: CounterState, text: str, frame: bytes) -> Offer | None:
        """Offer a counter's new total (``frame``: ``text`` as the frame shared by all).

        None when this client already holds the state.
        """
        if state is self.last:
            return None
        self.last = state
        flow = self.flow
        if not flow.greeted:
            text = total_message(self.counter, state, missed_updates(self.since, state))
            self.first_total.set()
        connection = self.connection
        offer = flow.offer(text, open=wire.is_open(connection), paused=wire.is_paused(connection))
        if offer is Offer.SHARED:
            wire.write(connection, frame)
        elif offer is Offer.OWN:
            self.send_text(text)
        elif offer is Offer.STALL:
            self.worker.tasks.spawn(self._write_when_drained())
        return offer

    def sent_increment(self) -> None:
        if self.flow.sent():
            self.room.clear()

    def settled_increment(self) -> None:
        if self.flow.settled():
            self.room.set()

    async def _write_when_drained(self) -> None:
        try:
            async with asyncio.timeout(self.worker.settings.slow_client_timeout):
                await wire.drain(self.connection)
        except TimeoutError:
            await self.close_as_slow()
            return
        except ConnectionError:
            return
        held = self.flow.drained()
        if held is not None:
            self.worker.metrics.totals_sent.inc()
            self.send_text(held)

    async def wait_for_room(self) -> None:
        """Stop reading while too much is unacknowledged or unread; close if stuck."""
        if self.room.is_set() and not wire.is_paused(self.connection):
            # The common case, without arming a timer per message (a timer per
            # message showed in profiles of the throughput run).
            return
        try:
            async with asyncio.timeout(self.worker.settings.slow_client_timeout):
                await self.room.wait()
                await wire.drain(self.connection)
        except TimeoutError:
            await self.close_as_slow()

    async def close_as_slow(self) -> None:
        """Close with 1008; abort if even the close frame cannot be written.

        websockets' close() waits for the send buffer to drain before its close
        timeout starts, so for a peer that reads nothing it would wait forever.
        """
        self.worker.metrics.slow_clients_closed.inc()
        log.info("closing slow client", extra={"event": "slow_client_closed"})
        try:
            async with asyncio.timeout(self.worker.settings.close_timeout):
                await self.connection.close(CloseCode.POLICY_VIOLATION, "slow consumer")
        except TimeoutError:
            wire.abort(self.connection)


def rate_limit_bucket(settings: Settings) -> TokenBucket | None:
    """One connection's rate limit, WebSocket or kept-alive HTTP (None: no limit)."""
    if settings.rate_limit <= 0:
        return None
    return TokenBucket(settings.rate_limit, settings.rate_burst, time.monotonic())
