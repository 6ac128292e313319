"""The asyncio client: one WebSocket to a counter, kept open, with exactly-once increments.

::

    async with connect("ws://localhost:8000", counter="votes") as votes:
        ack = await votes.increment(5)
        async for total in votes.totals():
            print(total.total)

This module only moves frames and time: every decision (numbering, resends,
backoff, which totals are news, when to give up) is ``core.ClientCore``'s.
The client reconnects with capped, jittered backoff, resumes with the last
seq it saw (``?since=``), and ends with ``ConnectionRefused`` on a handshake
refusal a retry cannot change (400, 401, 403, 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from ssl import SSLCertVerificationError, SSLContext
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
)

from . import core
from .results import Ack, ClientClosed, CounterClientError, Total
from .rules import Session
from .urls import counter_of_url, counter_url, tls_options

log = logging.getLogger("ws_counter.client")

# The worker keeps the outcomes of a session's last 64 increments
# (WS_SESSION_WINDOW) and reads at most 64 unacknowledged ones per connection.
DEFAULT_MAX_IN_FLIGHT = 64
# Seconds ``close()`` gives unacknowledged increments before it closes.
CLOSE_GRACE = 5.0
# Frames are small; anything larger is not ws-counter's.
MAX_FRAME_BYTES = 2**16


def connect(  # noqa: PLR0913 (the options are keyword-only)
    url: str,
    counter: str | None = None,
    *,
    token: str | None = None,
    open_timeout: float = 10.0,
    backoff: tuple[float, float] = (0.5, 15.0),
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    on_connection: Callable[[bool, str], None] | None = None,
    ssl: SSLContext | None = None,
) -> CounterClient:
    """A client of one counter, to use as ``async with connect(...) as counter:``.

    ``url`` is a worker or the load balancer (``ws://host:port``); ``counter``
    names the counter (default: the one ``url``'s path names, else
    ``default``). ``backoff`` is the first and the largest delay between
    reconnects, in seconds. ``on_connection(up, detail)`` is told of every
    connect and disconnect. ``ssl`` is the TLS context for a ``wss://`` URL
    (default: the system's CAs); ``tls_context(ca_file)`` makes one that trusts
    a CA of your own. ``http://`` and ``https://`` URLs are taken as ``ws://``
    and ``wss://``.
    """
    return CounterClient(
        counter_url(url, counter, token=token),
        open_timeout=open_timeout,
        policy=core.Policy(backoff=backoff, max_in_flight=max_in_flight),
        on_connection=on_connection,
        ssl=ssl,
    )


class Outbox:
    """Frames for one connection, written in the order given, by one task at a time.

    A connection that closes drops what is left: the core sends every
    unacknowledged increment again on the next connection.
    """

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._frames: deque[str] = deque()
        self._writer: asyncio.Task[None] | None = None

    def push(self, frames: Iterable[str]) -> None:
        self._frames.extend(frames)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        try:
            while self._frames:
                await self.connection.send(self._frames.popleft())
        except ConnectionClosed:
            self._frames.clear()
        finally:
            self._writer = None


class CounterClient:
    """One counter over one WebSocket, reconnected as needed; see ``connect``."""

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float,
        policy: core.Policy,
        on_connection: Callable[[bool, str], None] | None,
        ssl: SSLContext | None = None,
    ) -> None:
        self.url = url
        self._tls = tls_options(url, ssl)
        self.counter = counter_of_url(url)
        self._open_timeout = open_timeout
        self._on_connection = on_connection or (lambda up, detail: None)
        self._core: core.ClientCore[asyncio.Future[Ack]] = core.ClientCore(
            self.counter, Session(), policy
        )
        self._latest: Total | None = None
        self._version = 0
        self._news = asyncio.Event()
        self._first = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: CounterClientError | None = None
        self._outbox: Outbox | None = None
        self._timers: dict[core.Timer, asyncio.TimerHandle] = {}
        self._reconnect_after = 0.0
        self._runner: asyncio.Task[None] | None = None

    # The application's side.

    async def __aenter__(self) -> CounterClient:
        self._runner = asyncio.create_task(self._run())
        await _first_of(self._first.wait(), self._stopped.wait())
        self._raise_failure()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # (type, exception, traceback): wait for acks unless the block raised.
        await self.close(wait=exc_info[1] is None)

    @property
    def total(self) -> Total | None:
        """The newest total seen (None before the first)."""
        return self._latest

    @property
    def session(self) -> str:
        book = self._core.book
        assert isinstance(book, Session)
        return book.session

    @property
    def connected(self) -> bool:
        return self._core.connected

    @property
    def in_flight(self) -> int:
        return len(self._core.tickets())

    async def increment(self, by: int) -> Ack:
        """Add ``by``; returns once it is applied, exactly once.

        Waits while ``max_in_flight`` increments are unacknowledged. A
        connection lost meanwhile is made again and the increment sent again
        unchanged. Raises ValueError for a ``by`` outside the signed 64-bit
        range, IncrementRefused if the worker refuses it for good (nothing
        applied), ConnectionRefused if the client could not go on,
        ClientClosed if the client was closed first. Cancelling the wait
        does not take the increment back.
        """
        self._raise_failure()
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._apply(self._core.handle(core.IncrementAsked(by, future)))
        return await asyncio.shield(future)

    async def totals(self) -> AsyncIterator[Total]:
        """The counter's totals as they change: the newest first, never a backlog.

        A consumer slower than the updates skips to the newest total. Ends when
        the client closes; raises ConnectionRefused if it could not go on.
        """
        version = 0
        while True:
            if self._version != version and self._latest is not None:
                version = self._version
                yield self._latest
                continue
            if self._stopped.is_set():
                self._raise_failure()
                return
            await _first_of(self._news.wait(), self._stopped.wait())

    async def close(self, *, wait: bool = True) -> None:
        """Close; with ``wait``, first give unacknowledged increments CLOSE_GRACE seconds."""
        tickets = self._core.tickets()
        if wait and tickets and not self._stopped.is_set():
            await asyncio.wait(tickets, timeout=CLOSE_GRACE)
        self._apply(self._core.handle(core.CloseAsked()))
        if self._runner is not None:
            await self._runner

    # The connection's side.

    async def _run(self) -> None:
        while not self._stopped.is_set():
            lost = await self._connection()
            self._apply(self._core.handle(lost))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._reconnect_after):
                    await self._stopped.wait()

    async def _connection(self) -> core.Lost:
        """One connection, from the handshake until it ends; how it ended."""
        url = counter_url(self.url, since=self._core.since)
        try:
            async with ws_connect(
                url,
                open_timeout=self._open_timeout,
                compression=None,
                max_size=MAX_FRAME_BYTES,
                **self._tls,
            ) as connection:
                self._outbox = Outbox(connection)
                self._on_connection(True, "connected")
                self._apply(self._core.handle(core.Connected()))
                await _first_of(self._read(connection), self._stopped.wait())
            return core.Lost("closed")
        except InvalidStatus as exc:
            response = exc.response
            reason = response.body.decode(errors="replace").strip()
            # The worker's body says why (503: "Redis is unavailable", ...).
            detail = (
                f"HTTP {response.status_code}: {reason[:200]}"
                if reason
                else f"HTTP {response.status_code}"
            )
            return core.Lost(detail, response.status_code, reason)
        except SSLCertVerificationError as exc:
            return core.Lost(f"TLS certificate not trusted: {exc.verify_message}", untrusted=True)
        except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
            return core.Lost(_describe(exc, plain=url.startswith("ws://")))
        finally:
            self._outbox = None

    async def _read(self, connection: ClientConnection) -> None:
        async for frame in connection:
            text = frame if isinstance(frame, str) else frame.decode(errors="replace")
            self._apply(self._core.handle(core.Received(text)))

    def _apply(self, actions: list[core.Action]) -> None:
        for action in actions:
            match action:
                case core.Send(frames):
                    if self._outbox is not None:
                        self._outbox.push(frames)
                case core.Resolve(ticket, ack):
                    if not ticket.done():
                        ticket.set_result(ack)
                case core.Reject(ticket, error):
                    _reject(ticket, error)
                case core.Show(total):
                    self._show(total)
                case core.Arm(timer, delay):
                    loop = asyncio.get_running_loop()
                    self._timers[timer] = loop.call_later(delay, self._fire, timer)
                case core.Reconnect(delay, detail):
                    self._reconnect_after = delay
                    self._on_connection(False, f"{detail}; reconnecting in {delay:.1f}s")
                case core.Stop(error):
                    self._stop(error)
                case core.Regress(total):
                    log.warning("a total went back within its epoch: %s", total)
                case core.Note(code, message):
                    log.debug("the worker said %s: %s", code, message)

    def _fire(self, timer: core.Timer) -> None:
        self._timers.pop(timer, None)
        self._apply(self._core.handle(core.TimerFired(timer)))

    def _show(self, total: Total) -> None:
        self._latest = total
        self._version += 1
        self._news.set()
        self._news = asyncio.Event()
        self._first.set()

    def _stop(self, failure: CounterClientError | None) -> None:
        self._failure = failure
        self._stopped.set()
        for handle in self._timers.values():
            handle.cancel()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stopped.is_set():
            raise ClientClosed("the client is closed")


def _reject(ticket: asyncio.Future[Any], error: CounterClientError) -> None:
    if not ticket.done():
        ticket.set_exception(error)
        # Retrieved here, so an increment nobody awaits is not logged as lost.
        ticket.exception()


async def _first_of(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    for task in tasks:
        failure = task.exception() if task.done() and not task.cancelled() else None
        if failure is not None:
            raise failure


def _describe(exc: BaseException, *, plain: bool) -> str:
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return f"closed with {exc.rcvd.code} {exc.rcvd.reason}".strip()
    text = str(exc) or type(exc).__name__
    if plain and isinstance(exc, InvalidMessage):
        # A TLS port answers a plain handshake with TLS bytes (or an alert), not HTTP.
        text += " (is this a TLS port? try wss://)"
    return text
