"""The asyncio client: one WebSocket to a counter, kept open, with exactly-once increments.

::

    async with connect("ws://localhost:8000", counter="votes") as votes:
        ack = await votes.increment(5)
        async for total in votes.totals():
            print(total.total)

The client reconnects with capped, jittered exponential backoff, resumes with
the last seq it saw (``?since=``), sends unacknowledged increments again in
order (``rules.Session``), and yields only totals that are news
(``rules.Freshness``). Handshake refusals that cannot pass on a retry (400,
401, 403, 404) end it with ``ConnectionRefused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from worker.core.backoff import backoff_delays, nth_delay
from worker.core.protocol import DEFAULT_COUNTER

from .rules import Fail, Forgotten, Freshness, Resend, ResendFrom, Session

log = logging.getLogger("ws_counter.client")

# Handshake statuses a retry cannot change.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404})
# The server keeps the outcomes of a session's last 64 increments
# (WS_SESSION_WINDOW) and reads at most 64 unacknowledged ones per connection
# (WS_MAX_PENDING_INCREMENTS): more in flight would gain nothing.
DEFAULT_MAX_IN_FLIGHT = 64
# Seconds ``close()`` gives unacknowledged increments before it closes.
CLOSE_GRACE = 5.0


class CounterClientError(Exception):
    """Base class of the client's errors."""


class ConnectionRefused(CounterClientError):
    """The worker refused the handshake with a status a retry cannot change."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class IncrementRefused(CounterClientError):
    """The worker refused an increment for good; it was not applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class IncrementUnknown(CounterClientError):
    """What became of the increment cannot be known; it is not sent again, so it counts
    at most once."""


class ClientClosed(CounterClientError):
    """The client was closed before the increment was acknowledged: it may or may not apply."""


@dataclass(frozen=True, slots=True)
class Total:
    """A counter's state: ``seq`` counts increments within ``epoch``.

    ``missed`` is true on the first total after a resume that skipped updates.
    """

    counter: str
    total: int
    seq: int
    epoch: str
    missed: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """An increment applied exactly once.

    ``total``, ``seq`` and ``epoch`` are the state right after it, or None when
    it was applied so long ago that the worker no longer keeps its outcome.
    ``duplicate``: this answer is to a resend of an increment applied before.
    """

    session: str
    n: int
    total: int | None
    seq: int | None
    epoch: str | None
    duplicate: bool = False


def connect(
    url: str,
    counter: str | None = None,
    *,
    token: str | None = None,
    open_timeout: float = 10.0,
    backoff: tuple[float, float] = (0.5, 15.0),
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    on_connection: Callable[[bool, str], None] | None = None,
) -> CounterClient:
    """A client of one counter, to use as ``async with connect(...) as counter:``.

    ``url`` is a worker or the load balancer (``ws://host:port``); ``counter``
    names the counter (default: the one ``url``'s path names, else
    ``default``). ``backoff`` is the first and the largest delay between
    reconnects, in seconds. ``on_connection(up, detail)`` is told of every
    connect and disconnect.
    """
    return CounterClient(
        counter_url(url, counter, token=token),
        open_timeout=open_timeout,
        backoff=backoff,
        max_in_flight=max_in_flight,
        on_connection=on_connection,
    )


def counter_url(url: str, counter: str | None = None, **query: str | int | None) -> str:
    """``url`` pointed at ``counter`` on the same service, with ``query`` added.

    A path in front of ``/counters/`` (a proxy's prefix) is kept; a URL that
    already names the counter (or the service's root, for ``default``) is kept
    as given; without ``counter`` the path is left alone. Parameters that are
    None are left out: ``counter_url("ws://h:8080", "votes", token=None, since=7)``
    is ``ws://h:8080/counters/votes?since=7``.
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    prefix = parts.path.rstrip("/")
    names_it = prefix.endswith(f"/counters/{counter}") or (
        counter == DEFAULT_COUNTER and prefix == ""
    )
    if counter is not None and not names_it:
        path = f"{prefix.partition('/counters/')[0]}/counters/{counter}"
    added = urlencode({name: value for name, value in query.items() if value is not None})
    return urlunsplit(
        (parts.scheme, parts.netloc, path, "&".join(filter(None, [parts.query, added])), "")
    )


def counter_of_url(url: str) -> str:
    """The counter a URL names: what follows ``/counters/``, else ``default``."""
    _, found, name = urlsplit(url).path.partition("/counters/")
    return name.rstrip("/") if found and name.rstrip("/") else DEFAULT_COUNTER


class CounterClient:
    """One counter over one WebSocket, reconnected as needed; see ``connect``."""

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float,
        backoff: tuple[float, float],
        max_in_flight: int,
        on_connection: Callable[[bool, str], None] | None,
    ) -> None:
        self.url = url
        # Acks carry no counter name; the totals they hold are this counter's.
        self.counter = counter_of_url(url)
        self._open_timeout = open_timeout
        self._backoff = backoff
        self._on_connection = on_connection or (lambda up, detail: None)
        self._session: Session[asyncio.Future[Ack]] = Session()
        self._room = asyncio.Semaphore(max_in_flight)
        self._freshness = Freshness()
        self._latest: Total | None = None
        self._version = 0
        self._news = asyncio.Event()
        self._first = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: CounterClientError | None = None
        self._connection: ClientConnection | None = None
        self._resend: asyncio.TimerHandle | None = None
        self._resend_from = ResendFrom()
        self._runner: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    # The application's side.

    async def __aenter__(self) -> CounterClient:
        self._runner = asyncio.create_task(self._run())
        await _first_of(self._first.wait(), self._stopped.wait())
        self._raise_failure()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close(wait=exc is None)

    @property
    def total(self) -> Total | None:
        """The newest total seen (None before the first)."""
        return self._latest

    @property
    def session(self) -> str:
        return self._session.session

    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def in_flight(self) -> int:
        return len(self._session.outstanding)

    async def increment(self, by: int) -> Ack:
        """Add ``by``; returns once it is applied, exactly once.

        Waits while ``max_in_flight`` increments are unacknowledged. A
        connection lost meanwhile is made again and the increment sent again
        unchanged. Raises IncrementRefused if the worker refuses it for good
        (nothing applied), ConnectionRefused if the client could not go on,
        ClientClosed if the client was closed first. Cancelling the wait does
        not take the increment back.
        """
        self._raise_failure()
        async with self._room:
            self._raise_failure()
            future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
            _, item = self._session.add(by, future)
            connection = self._connection
            if connection is not None:
                with contextlib.suppress(ConnectionClosed):
                    await connection.send(item.frame)
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
        if wait and self._session.outstanding and self._failure is None:
            futures = [item.ticket for item in self._session.outstanding.values()]
            await asyncio.wait(futures, timeout=CLOSE_GRACE)
        self._stop(None)
        if self._runner is not None:
            await self._runner

    # The connection's side.

    async def _run(self) -> None:
        delays = backoff_delays(*self._backoff)
        try:
            while not self._stopped.is_set():
                try:
                    async with ws_connect(
                        self._resume_url(),
                        open_timeout=self._open_timeout,
                        compression=None,
                        max_size=2**16,
                    ) as connection:
                        delays = backoff_delays(*self._backoff)
                        await self._converse(connection)
                    detail = "closed"
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in PERMANENT_STATUSES:
                        reason = exc.response.body.decode(errors="replace").strip()
                        self._stop(ConnectionRefused(status, reason))
                        return
                    detail = f"HTTP {status}"
                except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                    detail = _describe(exc)
                if self._stopped.is_set():
                    return
                delay = next(delays)
                self._on_connection(False, f"{detail}; reconnecting in {delay:.1f}s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopped.wait()
        finally:
            self._connection = None

    async def _converse(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._on_connection(True, "connected")
        try:
            # Unacknowledged increments go again, in order, unchanged.
            await send_in_order(connection, self._session.frames())
            stopped = asyncio.create_task(self._stopped.wait())
            reading = asyncio.create_task(self._read(connection))
            try:
                await asyncio.wait({stopped, reading}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                reading.cancel()
            if reading.done() and not reading.cancelled():
                reading.result()  # the reason the connection ended, raised here
        finally:
            self._connection = None

    async def _read(self, connection: ClientConnection) -> None:
        async for raw in connection:
            self._on_message(json.loads(raw))

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "total":
            self._see(message)
        elif kind == "ack":
            self._on_ack(message)
        elif kind == "error":
            self._on_error(message)

    def _see(self, message: dict[str, Any]) -> None:
        epoch, seq = message["epoch"], message["seq"]
        if not self._freshness.is_news(epoch, seq):
            return
        self._latest = Total(
            message.get("counter") or self.counter,
            message["total"],
            seq,
            epoch,
            bool(message.get("missed")),
        )
        self._version += 1
        self._news.set()
        self._news = asyncio.Event()
        self._first.set()

    def _on_ack(self, message: dict[str, Any]) -> None:
        item = self._session.settle(message.get("session"), message.get("n"))
        if item is None:
            return
        if "seq" in message:
            self._see(message)
        ack = Ack(
            message["session"],
            message["n"],
            message.get("total"),
            message.get("seq"),
            message.get("epoch"),
            bool(message.get("duplicate")),
        )
        if not item.ticket.done():
            item.ticket.set_result(ack)

    def _on_error(self, message: dict[str, Any]) -> None:
        code = str(message.get("code"))
        decision = self._session.refused(
            message.get("session"), message.get("n"), code, message.get("expected")
        )
        if isinstance(decision, Fail):
            ticket = decision.item.ticket
            if not ticket.done():
                ticket.set_exception(IncrementRefused(code, str(message.get("message"))))
        elif isinstance(decision, Resend):
            self._resend_later(decision.start, decision.attempt)
        elif isinstance(decision, Forgotten):
            log.warning(
                "the worker forgot this session; %d increments unknown", len(decision.items)
            )
            unknown = IncrementUnknown(
                "the worker no longer knows this client's session (idle past WS_SESSION_TTL):"
                " this increment may or may not have been applied before; it is not sent again"
            )
            for item in decision.items:
                if not item.ticket.done():
                    item.ticket.set_exception(unknown)

    def _resend_later(self, start: int, attempt: int) -> None:
        """One resend of every outstanding increment from the lowest refused, after a backoff."""
        if self._resend_from.ask(start):
            delay = nth_delay(*self._backoff, attempt)
            self._resend = asyncio.get_running_loop().call_later(delay, self._resend_due)

    def _resend_due(self) -> None:
        self._resend = None
        self._resend_now(self._resend_from.take())

    def _resend_now(self, start: int) -> None:
        # On a lost connection the reconnect sends them all anyway.
        connection = self._connection
        if connection is not None:
            task = asyncio.create_task(send_in_order(connection, self._session.frames(start)))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _resume_url(self) -> str:
        return counter_url(self.url, since=self._freshness.seq)

    def _stop(self, failure: CounterClientError | None) -> None:
        if self._stopped.is_set():
            return
        self._failure = failure
        self._stopped.set()
        if self._resend is not None:
            self._resend.cancel()
        error = failure or ClientClosed("the client closed before this increment was acknowledged")
        for item in self._session.outstanding.values():
            if not item.ticket.done():
                item.ticket.set_exception(error)
                # Retrieved here, so an increment nobody awaits is not logged as lost.
                item.ticket.exception()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._stopped.is_set():
            raise ClientClosed("the client is closed")


async def send_in_order(connection: ClientConnection, frames: list[str]) -> None:
    """Send ``frames`` one after another; a closed connection ends it quietly (the
    reconnect sends again whatever is still unacknowledged)."""
    with contextlib.suppress(ConnectionClosed):
        for frame in frames:
            await connection.send(frame)


async def _first_of(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return f"closed with {exc.rcvd.code} {exc.rcvd.reason}".strip()
    return str(exc) or type(exc).__name__
