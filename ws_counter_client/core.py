"""A ws-counter client as a state machine without I/O: events in, actions out.

An adapter owns the socket and the clock (the asyncio library in ``client``,
the load test's clients, and ``/client.js`` function by function). It tells
the core what happened, as an event, and carries out the actions the core
answers, in order::

    core = ClientCore("votes", Session())
    for action in core.handle(Connected()):
        ...  # Send: write the frames; Resolve: complete the ticket; ...

The core holds no socket, no task and no clock: a delay comes out as an
action (``Arm``, ``Reconnect``) and comes back as an event when it is over.
The book (``rules.Session``, or ``rules.Ids``) numbers increments and decides
refusals; the rest is here:

=====================  ==================================  ==============================
event                  when                                actions, in order
=====================  ==================================  ==============================
IncrementAsked         stopped                             Reject(ClientClosed)
                       fewer than max in flight            Send(its frame) if connected
                       max in flight                       none: waits for room
Connected              always                              Send(every outstanding frame)
Received "total"       news (new epoch, higher seq)        Show
                       older than the last total           Regress
Received "ack"         answers an outstanding increment    Show if news, Resolve, Send
                                                           (increments that found room)
Received "error"       always                              Note(code), then by the book:
                       refused for good                    Reject(IncrementRefused), Send
                       refused after a second send         Reject(IncrementUnknown), Send
                       resendable                          Arm(RESEND) unless armed
                       resendable past max_resends         Reject(IncrementRefused), Send
                       the worker forgot the session       Reject(IncrementUnknown) each
Received anything      unreadable, or of no known type     Note(MALFORMED)
TimerFired(RESEND)     connected                           Send(outstanding from the
                                                           lowest refused position)
Lost                   a status a retry cannot change      Reject(ConnectionRefused) each,
                                                           Stop
                       past max_reconnects                 Reject(CounterClientError)
                                                           each, Stop
                       otherwise                           Reconnect(backoff delay)
CloseAsked             always                              Reject(ClientClosed) each, Stop
=====================  ==================================  ==============================

An answer that matches no outstanding increment (a second answer to a
resend) leads to nothing: every increment is resolved or rejected once.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from ws_counter.worker.core.backoff import backoff_ceiling
from ws_counter.worker.core.protocol import is_integer
from ws_counter.worker.core.state import CounterState

from .results import (
    Ack,
    CertificateRejected,
    ClientClosed,
    ConnectionRefused,
    CounterClientError,
    IncrementRefused,
    IncrementUnknown,
    Total,
)
from .rules import Book, Decision, Fail, Forgotten, Freshness, Resend, ResendFrom, Unsure

T = TypeVar("T")

# Handshake statuses a retry cannot change.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404})
# The code of a Note about a server message the core could not read.
MALFORMED = "malformed_message"
UNSURE = (
    "refused now, but an earlier attempt of this increment may have been applied (its"
    " connection was lost, or Redis could not say); it is not sent again"
)
FORGOTTEN = (
    "the worker no longer knows this client's session (idle past WS_SESSION_TTL): this"
    " increment may or may not have been applied before; it is not sent again"
)


class Timer(StrEnum):
    """Delays the core asks for with ``Arm``."""

    RESEND = "resend"


# Events: what happened.


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is open."""


@dataclass(frozen=True, slots=True)
class Received:
    """A text frame arrived."""

    text: str


@dataclass(frozen=True, slots=True)
class Lost:
    """The connection closed, or could not be made; ``status`` of a refused handshake."""

    detail: str = "closed"
    status: int | None = None
    reason: str = ""
    # The server's TLS certificate was not trusted: permanent, like a refusal.
    untrusted: bool = False


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class IncrementAsked(Generic[T]):
    """The application asks to add ``by``; ``ticket`` is how it hears the outcome."""

    # A by outside the protocol is refused by the book, before it is numbered.
    by: int
    ticket: T


@dataclass(frozen=True, slots=True)
class CloseAsked:
    """The application closes the client."""


Event = Connected | Received | Lost | TimerFired | IncrementAsked[Any] | CloseAsked


# Actions: what the adapter does.


@dataclass(frozen=True, slots=True)
class Send:
    """Write these frames, in this order, on the open connection."""

    frames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resolve:
    """The increment of ``ticket`` was applied exactly once."""

    ticket: Any
    ack: Ack


@dataclass(frozen=True, slots=True)
class Reject:
    """The increment of ``ticket`` ends without an ack: ``error`` says how."""

    ticket: Any
    error: CounterClientError


@dataclass(frozen=True, slots=True)
class Show:
    """A total that is news."""

    total: Total


@dataclass(frozen=True, slots=True)
class Regress:
    """A total message older than an earlier one of the same epoch (the server broke a rule)."""

    total: Total


@dataclass(frozen=True, slots=True)
class Note:
    """An error message from the server, or one the core could not read (MALFORMED)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Arm:
    """Fire ``TimerFired(timer)`` after ``delay`` seconds (unless the client stops first)."""

    timer: Timer
    delay: float


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Connect again after ``delay`` seconds, resuming from ``ClientCore.since``."""

    delay: float
    detail: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The client is over: ``error`` is why, or None when it was closed."""

    error: CounterClientError | None


Action = Send | Resolve | Reject | Show | Regress | Note | Arm | Reconnect | Stop


@dataclass(frozen=True, slots=True)
class Policy:
    """How hard a client tries. None: no limit.

    ``backoff`` is the first and the largest delay between reconnects and
    resends, in seconds; ``max_in_flight`` bounds unacknowledged increments
    (the worker reads at most WS_MAX_PENDING_INCREMENTS, 64 by default, per
    connection, so more would gain nothing).
    """

    backoff: tuple[float, float] = (0.5, 15.0)
    max_in_flight: int | None = 64
    max_resends: int | None = None
    max_reconnects: int | None = None


class ClientCore(Generic[T]):
    """One counter's client: the book of outstanding increments, totals and retries."""

    def __init__(
        self,
        counter: str,
        book: Book[T],
        policy: Policy | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.counter = counter
        self.book = book
        self.policy = policy or Policy()
        self.freshness = Freshness()
        self._last_total = Freshness()
        self._uniform = uniform
        self._waiting: deque[tuple[int, T]] = deque()
        self._resend_from = ResendFrom()
        self.connected = False
        self.stopped = False
        self.reconnects = 0

    @property
    def since(self) -> int | None:
        """The seq of the newest state seen, to resume from (``?since=``)."""
        return self.freshness.seq

    def tickets(self) -> list[T]:
        """Every increment asked for and not yet answered."""
        sent = [item.ticket for item in self.book.outstanding.values()]
        return sent + [ticket for _, ticket in self._waiting]

    def handle(self, event: Event) -> list[Action]:
        match event:
            case IncrementAsked(by, ticket):
                return self._increment(by, ticket)
            case Received(text):
                return self._received(text)
            case Connected():
                self.connected, self.reconnects = True, 0
                return self._send(self.book.frames())
            case TimerFired(Timer.RESEND):
                start = self._resend_from.take()
                return self._send(self.book.frames(start)) if self.connected else []
            case Lost():
                return self._lost(event)
            case CloseAsked():
                return self._stop(None)
        raise TypeError(f"not an event: {event!r}")

    # Increments asked for.

    def _increment(self, by: int, ticket: T) -> list[Action]:
        if self.stopped:
            return [Reject(ticket, ClientClosed("the client is closed"))]
        self._waiting.append((by, ticket))
        return self._fill()

    def _fill(self) -> list[Action]:
        """Number and send waiting increments while there is room in flight."""
        limit = self.policy.max_in_flight
        items = []
        while self._waiting and (limit is None or len(self.book.outstanding) < limit):
            items.append(self.book.add(*self._waiting.popleft()))
        if not self.connected:
            return []
        for item in items:
            item.sent += 1
        return self._send([item.frame for item in items])

    def _send(self, frames: list[str]) -> list[Action]:
        return [Send(tuple(frames))] if frames and self.connected else []

    # Messages received.

    def _received(self, text: str) -> list[Action]:
        try:
            message = json.loads(text)
        except ValueError:
            return [Note(MALFORMED, f"not JSON: {text[:80]!r}")]
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "total":
            return self._on_total(message)
        if kind == "ack":
            return self._on_ack(message)
        if kind == "error":
            return self._on_error(message)
        return [Note(MALFORMED, f"no known type: {text[:80]!r}")]

    def _on_total(self, message: Mapping[str, Any]) -> list[Action]:
        total = self._total_of(message)
        if total is None:
            return [Note(MALFORMED, f"a total without a valid state: {message!r}")]
        if self._last_total.is_old(total.epoch, total.seq):
            return [Regress(total)]
        self._last_total.take_if_news(total.epoch, total.seq)
        return self._see(total)

    def _on_ack(self, message: Mapping[str, Any]) -> list[Action]:
        item = self.book.settle(message)
        if item is None:
            return []
        total = self._total_of(message)
        ack = Ack(
            _text(message.get("session")),
            message.get("n") if is_integer(message.get("n")) else None,
            None if total is None else total.total,
            None if total is None else total.seq,
            None if total is None else total.epoch,
            message.get("duplicate") is True,
            _text(message.get("id")),
        )
        seen = [] if total is None else self._see(total)
        return [*seen, Resolve(item.ticket, ack), *self._fill()]

    def _on_error(self, message: Mapping[str, Any]) -> list[Action]:
        code, text = str(message.get("code")), str(message.get("message", ""))
        return [Note(code, text), *self._decided(self.book.refused(message, code), code, text)]

    def _decided(self, decision: Decision, code: str, text: str) -> list[Action]:
        """Carry out the book's decision about a refusal."""
        match decision:
            case Fail(item):
                return [Reject(item.ticket, IncrementRefused(code, text)), *self._fill()]
            case Unsure(item):
                unsure = IncrementUnknown(f"{code}: {UNSURE}")
                return [Reject(item.ticket, unsure), *self._fill()]
            case Resend(start, attempt, item):
                limit = self.policy.max_resends
                if limit is not None and attempt > limit:
                    self.book.drop(item)
                    refused = IncrementRefused(code, f"{text} (refused {attempt} times)")
                    return [Reject(item.ticket, refused), *self._fill()]
                if self._resend_from.ask(start):
                    return [Arm(Timer.RESEND, self._delay(attempt))]
            case Forgotten(items):
                unknown = IncrementUnknown(FORGOTTEN)
                return [*(Reject(i.ticket, unknown) for i in items), *self._fill()]
        return []

    def _total_of(self, message: Mapping[str, Any]) -> Total | None:
        total, seq, epoch = message.get("total"), message.get("seq"), message.get("epoch")
        if not (is_integer(total) and is_integer(seq) and isinstance(epoch, str)):
            return None
        counter = message.get("counter")
        name = counter if isinstance(counter, str) else self.counter
        return Total(name, CounterState(epoch, seq, total), message.get("missed") is True)

    def _see(self, total: Total) -> list[Action]:
        return [Show(total)] if self.freshness.take_if_news(total.epoch, total.seq) else []

    # The connection and the end.

    def _lost(self, event: Lost) -> list[Action]:
        self.connected = False
        if self.stopped:
            return []
        if event.status in PERMANENT_STATUSES:
            return self._stop(ConnectionRefused(event.status, event.reason or event.detail))
        if event.untrusted:
            return self._stop(CertificateRejected(event.detail))
        limit = self.policy.max_reconnects
        if limit is not None and self.reconnects >= limit:
            return self._stop(CounterClientError(f"gave up after {limit} reconnects"))
        self.reconnects += 1
        return [Reconnect(self._delay(self.reconnects - 1), event.detail)]

    def _stop(self, error: CounterClientError | None) -> list[Action]:
        if self.stopped:
            return []
        self.stopped, self.connected = True, False
        why = error or ClientClosed("the client closed before this increment was acknowledged")
        rejects: list[Action] = [Reject(ticket, why) for ticket in self.tickets()]
        self.book.take_all()
        self._waiting.clear()
        return [*rejects, Stop(error)]

    def _delay(self, attempt: int) -> float:
        """Capped exponential backoff with equal jitter (``ws_counter.worker.core.backoff``)."""
        ceiling = backoff_ceiling(*self.policy.backoff, attempt)
        return self._uniform(ceiling / 2, ceiling)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
