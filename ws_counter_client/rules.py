"""The client's half of exactly-once, without I/O: numbering, refusals and which totals are news.

Every client of ws-counter follows these rules: this library, ``ws-counter
client``, the load test and (in JavaScript) ``/client.js``. ``core`` drives
them; a *book* keeps a client's outstanding increments.

* A session numbers its increments 1, 2, 3, ... per counter; the worker
  applies each number once and refuses a gap with ``out_of_order`` and the
  number it ``expected``. Unacknowledged increments are sent again, in order
  and unchanged, after a reconnect and after a refusal that applied nothing.
  So a dropped connection neither loses nor doubles one (docs/guarantees.md).
* A session the worker no longer knows (idle longer than ``WS_SESSION_TTL``)
  expects a number below every outstanding one. Whether those were applied
  before it was forgotten cannot be told any more, so they end as unknown
  (never sent again, so never applied twice) and a new session starts.
* Ids (the load test's lean alternative) give each increment its own key;
  the same refusals are sent again, none is ever forgotten.
* A total is news when it is of a new epoch, or of the same epoch with a
  higher seq: a total never goes back within an epoch.

What a refusal does to the increment it answers, by code:

=================  ===============================================  ============
code               the increment                                    its number
=================  ===============================================  ============
RESENDABLE         stays outstanding; sent again from it (or from   kept
                   ``expected``) after a backoff
CONSUMES_NUMBER    fails; nothing was applied                       used up
any other          fails; refused before Redis, nothing applied     taken by the
                                                                    next one if last
any other, after   unknown: an earlier attempt may have applied it  kept
a second send
=================  ===============================================  ============
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ws_counter.worker.core.protocol import ErrorCode, check_by, incr_message

__all__ = ["check_by"]

# Refusals after which the same increment may be sent again unchanged: nothing
# was applied, or (unavailable) nothing is known; the session or id makes a
# second application impossible either way.
RESENDABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED, ErrorCode.OUT_OF_ORDER})
# The one refusal that uses its number up (Redis ran the step and refused it).
CONSUMES_NUMBER = frozenset({ErrorCode.OVERFLOW})

T = TypeVar("T")


def new_session_id() -> str:
    """96 random bits as 16 URL-safe characters (the protocol asks for 8 to 64)."""
    return secrets.token_urlsafe(12)


@dataclass(slots=True)
class Outstanding(Generic[T]):
    """One increment sent and not yet answered; ``ticket`` is the caller's (a future).

    ``position`` orders a book's increments: a session's ``n``, an id's place.
    """

    by: int
    frame: str
    ticket: T
    position: int
    resends: int = 0
    # How often its frame went out: past one, an earlier attempt may have been applied.
    sent: int = 0


@dataclass(frozen=True, slots=True)
class Resend:
    """Send every outstanding increment from ``start`` on again, in order, after a backoff.

    ``item`` is the refused increment and ``attempt`` how often it has been refused.
    """

    start: int
    attempt: int
    item: Outstanding[Any]


@dataclass(frozen=True, slots=True)
class Fail:
    """The increment was refused for good; nothing was applied."""

    item: Outstanding[Any]


@dataclass(frozen=True, slots=True)
class Unsure:
    """Refused for good, but an earlier attempt (a lost connection, an ``unavailable`` that
    may have applied it) may have been applied: what became of it cannot be known. Its
    number stays used."""

    item: Outstanding[Any]


@dataclass(frozen=True, slots=True)
class Forgotten:
    """The worker forgot the session: the outstanding increments' outcomes are unknown.

    They are no longer outstanding; the session starts again under a new id.
    """

    items: list[Outstanding[Any]]


Decision = Resend | Fail | Unsure | Forgotten | None


@dataclass
class Book(Generic[T]):
    """Outstanding increments by position, in the order they were sent."""

    outstanding: dict[int, Outstanding[T]] = field(default_factory=dict)

    def frames(self, start: int = 1) -> list[str]:
        """The frames to send of every outstanding increment from ``start`` (counted as sent)."""
        items = [item for position, item in self.outstanding.items() if position >= start]
        for item in items:
            item.sent += 1
        return [item.frame for item in items]

    def drop(self, item: Outstanding[T]) -> None:
        self.outstanding.pop(item.position, None)

    def take_all(self) -> list[Outstanding[T]]:
        items, self.outstanding = list(self.outstanding.values()), {}
        return items

    def add(self, by: int, ticket: T) -> Outstanding[T]:
        raise NotImplementedError

    def settle(self, message: Mapping[str, object]) -> Outstanding[T] | None:
        """The increment an ack answers, no longer outstanding (None if not ours)."""
        raise NotImplementedError

    def refused(self, message: Mapping[str, object], code: str) -> Decision:
        """What to do about an error message; None when it answers no outstanding increment."""
        raise NotImplementedError

    def _resend(self, item: Outstanding[T], start: int | None = None) -> Resend:
        item.resends += 1
        return Resend(item.position if start is None else start, item.resends, item)


@dataclass
class Session(Book[T]):
    """A session: increments numbered 1, 2, 3, ... (the numbers are the positions)."""

    session: str = field(default_factory=new_session_id)
    next_n: int = 1

    def add(self, by: int, ticket: T) -> Outstanding[T]:
        n = self.next_n
        # incr_message refuses a by outside the protocol (ValueError), before numbering.
        frame = incr_message(by, session=self.session, n=n)
        self.next_n += 1
        item = Outstanding(by, frame, ticket, n)
        self.outstanding[n] = item
        return item

    def _number(self, message: Mapping[str, object]) -> int | None:
        n = message.get("n")
        if message.get("session") != self.session or not isinstance(n, int):
            return None
        return n if n in self.outstanding else None

    def settle(self, message: Mapping[str, object]) -> Outstanding[T] | None:
        n = self._number(message)
        return None if n is None else self.outstanding.pop(n)

    def refused(self, message: Mapping[str, object], code: str) -> Decision:
        n = self._number(message)
        if n is None:
            return None
        item = self.outstanding[n]
        if code not in RESENDABLE:
            del self.outstanding[n]
            if item.sent > 1:
                return Unsure(item)
            if code not in CONSUMES_NUMBER and n == self.next_n - 1:
                # Refused before it reached Redis: the next increment takes its number.
                self.next_n = n
            return Fail(item)
        expected = message.get("expected")
        if code != ErrorCode.OUT_OF_ORDER or not isinstance(expected, int):
            return self._resend(item)
        if expected < min(self.outstanding):
            return self.forget()
        return self._resend(item, min((k for k in self.outstanding if k >= expected), default=n))

    def forget(self) -> Forgotten:
        """Drop every outstanding increment and start a new session numbered from 1."""
        items = self.take_all()
        self.session, self.next_n = new_session_id(), 1
        return Forgotten(items)


@dataclass
class Ids(Book[T]):
    """One id per increment (``prefix-1``, ``prefix-2``, ...), each applied once on its own."""

    prefix: str = field(default_factory=new_session_id)
    count: int = 0
    positions: dict[str, int] = field(default_factory=dict)

    def add(self, by: int, ticket: T) -> Outstanding[T]:
        self.count += 1
        key = f"{self.prefix}-{self.count}"
        item = Outstanding(by, incr_message(by, key), ticket, self.count)
        self.outstanding[self.count] = item
        self.positions[key] = self.count
        return item

    def _position(self, message: Mapping[str, object]) -> int | None:
        key = message.get("id")
        return self.positions.get(key) if isinstance(key, str) else None

    def settle(self, message: Mapping[str, object]) -> Outstanding[T] | None:
        position = self._position(message)
        if position is None:
            return None
        del self.positions[str(message["id"])]
        return self.outstanding.pop(position, None)

    def refused(self, message: Mapping[str, object], code: str) -> Decision:
        position = self._position(message)
        if position is None or position not in self.outstanding:
            return None
        item = self.outstanding[position]
        if code in RESENDABLE:
            return self._resend(item)
        del self.outstanding[position], self.positions[str(message["id"])]
        return Unsure(item) if item.sent > 1 else Fail(item)

    def drop(self, item: Outstanding[T]) -> None:
        super().drop(item)
        self.positions = {k: p for k, p in self.positions.items() if p != item.position}


@dataclass
class ResendFrom:
    """The refusals of one burst, answered by one resend from the lowest position refused.

    A refused number leaves a gap that makes every later one out_of_order, so a
    burst of refusals asks for many resends; one, from the lowest, answers them all.
    """

    start: int | None = None

    def ask(self, start: int) -> bool:
        """Ask for a resend from ``start``; True when none was pending (arm a timer)."""
        first = self.start is None
        self.start = start if self.start is None else min(self.start, start)
        return first

    def take(self) -> int:
        """The position to resend from, now that the timer fired; nothing is pending after."""
        start, self.start = self.start or 1, None
        return start


@dataclass
class Freshness:
    """The newest state seen of one counter, and whether another is news."""

    epoch: str | None = None
    seq: int | None = None

    def take_if_news(self, epoch: str, seq: int) -> bool:
        """Remember the state if it is news (the first state, a new epoch, or a higher seq);
        whether it was. It changes what the next call answers, hence no ``is_`` name."""
        if self.is_old(epoch, seq) or (self.epoch == epoch and seq == self.seq):
            return False
        self.epoch, self.seq = epoch, seq
        return True

    def is_old(self, epoch: str, seq: int) -> bool:
        """Whether ``seq`` lies below the newest seen of the same epoch."""
        return self.epoch == epoch and self.seq is not None and seq < self.seq
