"""The client's half of exactly-once, without I/O: numbering, resends and which totals are news.

Every client of ws-counter follows these rules: this library, ``ws-counter
client``, the load test and (in JavaScript) ``/client.js``.

* A session numbers its increments 1, 2, 3, ... per counter; the worker
  applies each number once and refuses a gap with ``out_of_order`` and the
  number it ``expected``. Unacknowledged increments are sent again, in order
  and unchanged, after a reconnect and after a refusal that applied nothing.
  So a dropped connection neither loses nor doubles one (docs/guarantees.md).
* A session the worker no longer knows (idle longer than ``WS_SESSION_TTL``)
  expects a number below every outstanding one. Whether those were applied
  before it was forgotten cannot be told any more, so they end as unknown
  (never sent again, so never applied twice) and a new session starts.
* A total is news when it is of a new epoch, or of the same epoch with a
  higher seq: a total never goes back within an epoch.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from worker.core.protocol import INT64_MAX, INT64_MIN, incr_message

# Refusals after which the same increment may be sent again unchanged: nothing
# was applied, or (unavailable) nothing is known; the session or id makes a
# second application impossible either way.
RESENDABLE = frozenset({"unavailable", "rate_limited", "out_of_order"})
# The one refusal that uses its number up (Redis ran the step and refused it).
CONSUMES_NUMBER = frozenset({"overflow"})

T = TypeVar("T")


def new_session_id() -> str:
    """96 random bits as 16 URL-safe characters (the protocol asks for 8 to 64)."""
    return secrets.token_urlsafe(12)


def check_by(by: int) -> int:
    """``by`` as the protocol takes it; ValueError before anything is numbered or sent."""
    if not isinstance(by, int) or isinstance(by, bool) or not INT64_MIN <= by <= INT64_MAX:
        raise ValueError(f"by must be an integer in the signed 64-bit range, not {by!r}")
    return by


@dataclass(slots=True)
class Outstanding(Generic[T]):
    """One increment sent and not yet answered; ``ticket`` is the caller's (a future)."""

    by: int
    frame: str
    ticket: T
    resends: int = 0


@dataclass(frozen=True, slots=True)
class Resend:
    """Send every outstanding increment from ``start`` on again, in order, after a backoff."""

    start: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Fail:
    """The increment was refused for good; nothing was applied."""

    item: Outstanding[Any]


@dataclass(frozen=True, slots=True)
class Forgotten:
    """The worker forgot the session: the outstanding increments' outcomes are unknown.

    They are no longer outstanding; the session starts again under a new id.
    """

    items: list[Outstanding[Any]]


Decision = Resend | Fail | Forgotten | None


@dataclass
class Session(Generic[T]):
    """A session's outstanding increments by number, in the order they were sent."""

    session: str = field(default_factory=new_session_id)
    next_n: int = 1
    outstanding: dict[int, Outstanding[T]] = field(default_factory=dict)

    def add(self, by: int, ticket: T) -> tuple[int, Outstanding[T]]:
        frame = incr_message(check_by(by), session=self.session, n=self.next_n)
        n = self.next_n
        self.next_n += 1
        item = Outstanding(by, frame, ticket)
        self.outstanding[n] = item
        return n, item

    def frames(self, start: int = 1) -> list[str]:
        return [item.frame for n, item in self.outstanding.items() if n >= start]

    def settle(self, session: object, n: object) -> Outstanding[T] | None:
        """The increment an ack answers, no longer outstanding (None if not ours)."""
        if session != self.session or not isinstance(n, int):
            return None
        return self.outstanding.pop(n, None)

    def refused(self, session: object, n: object, code: str, expected: object) -> Decision:
        """What to do about an error answering increment ``n`` of ``session``."""
        if session != self.session or not isinstance(n, int) or n not in self.outstanding:
            return None
        item = self.outstanding[n]
        if code not in RESENDABLE:
            del self.outstanding[n]
            if code not in CONSUMES_NUMBER and n == self.next_n - 1:
                # Refused before it reached Redis: the next increment takes its number.
                self.next_n = n
            return Fail(item)
        item.resends += 1
        start = n
        if code == "out_of_order" and isinstance(expected, int):
            if expected < min(self.outstanding):
                return self.forget()
            start = min((k for k in self.outstanding if k >= expected), default=n)
        return Resend(start, item.resends)

    def forget(self) -> Forgotten:
        """Drop every outstanding increment and start a new session numbered from 1."""
        items = list(self.outstanding.values())
        self.session, self.next_n, self.outstanding = new_session_id(), 1, {}
        return Forgotten(items)


@dataclass
class ResendFrom:
    """The refusals of one burst, answered by one resend from the lowest number refused.

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
        """The number to resend from, now that the timer fired; nothing is pending after."""
        start, self.start = self.start or 1, None
        return start


@dataclass
class Freshness:
    """The newest state seen of one counter, and whether another is news."""

    epoch: str | None = None
    seq: int | None = None

    def is_news(self, epoch: str, seq: int) -> bool:
        """True (and remembered) for the first state, a new epoch, or a higher seq."""
        if self.epoch == epoch and self.seq is not None and seq <= self.seq:
            return False
        self.epoch, self.seq = epoch, seq
        return True
