"""One client connection: its flow control carried out on a websockets connection.

What the worker writes to a connection in one turn of the event loop (its
acks, an error, its own total) goes out in one write: ``send_text`` queues a
frame and the first one queued schedules the flush for the end of the turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from ..core.auth import Grant
from ..core.flow import Flow, Offer
from ..core.protocol import CloseCode, CounterRoute, missed_updates, total_message
from ..core.ratelimit import TokenBucket
from ..core.state import CounterState
from ..settings import Settings
from .context import WorkerContext

log = logging.getLogger("ws_counter.worker")


def text_frame(text: str) -> bytes:
    """A server's text frame: no mask, no extension, so the same bytes for every client."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


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
        "raw",
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
        self.flow: Flow[str] = Flow(settings.max_pending_increments)
        # Without extensions a server frame is the same bytes for every
        # connection, so one serialized frame can be written to all of them.
        self.raw = not connection.protocol.extensions
        self.first_total = asyncio.Event()
        # Set while the worker may read this connection's next message.
        self.room = asyncio.Event()
        self.room.set()
        # The state last offered: a pass skips a client that already holds it.
        self.last: CounterState | None = None
        # Frames queued in this turn of the loop, written together at its end.
        self.outbox: list[bytes] = []
        self.loop = asyncio.get_running_loop()

    def send_text(self, text: str) -> None:
        """Queue a message for this turn's write (frames built here when no extension applies)."""
        if not self.raw:
            broadcast([self.connection], text)
            return
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(text_frame(text))

    def _flush(self) -> None:
        frames, self.outbox = self.outbox, []
        if self.connection.protocol.state is State.OPEN:
            self.connection.transport.write(b"".join(frames))

    def push_total(self, state: CounterState, text: str, frame: bytes) -> Offer | None:
        """Offer a counter's new total; write it now or keep it as the one held.

        None when this client already holds the state.
        """
        if state is self.last:
            return None
        self.last = state
        if not self.flow.greeted:
            text = total_message(self.counter, state, missed_updates(self.since, state))
            frame = b""
            self.first_total.set()
        connection = self.connection
        offer = self.flow.offer(
            text, open=connection.protocol.state is State.OPEN, paused=connection.paused
        )
        if offer is Offer.WRITE:
            if frame and self.raw and not self.outbox:
                connection.transport.write(frame)
            else:
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
                await self.connection.drain()
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
        if self.room.is_set() and not self.connection.paused:
            # The common case, without arming a timer per message (a timer per
            # message showed in profiles of the throughput run).
            return
        try:
            async with asyncio.timeout(self.worker.settings.slow_client_timeout):
                await self.room.wait()
                await self.connection.drain()
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
            self.connection.transport.abort()


def rate_limit_bucket(settings: Settings) -> TokenBucket | None:
    """One connection's rate limit, WebSocket or kept-alive HTTP (None: no limit)."""
    if settings.rate_limit <= 0:
        return None
    return TokenBucket(settings.rate_limit, settings.rate_burst, time.monotonic())


def limit_send_buffer(connection: ServerConnection, size: int) -> None:
    """Fix the kernel send buffer of a connection at ``size`` bytes.

    Left alone, Linux grows a socket's send buffer up to tcp_wmem's maximum
    (4 MiB by default) for a peer that does not read: kernel memory no
    conflation can reclaim. A fixed size makes such a peer show up as a
    paused transport within a few KiB, after which it gets only the newest total.
    """
    sock = connection.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
