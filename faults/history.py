"""What a fault run records: every increment's send and outcome, every total each client saw.

Times are ``time.monotonic()`` seconds of the process that ran the clients (one clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# The worker's own state type: (epoch, seq, total) means the same everywhere.
from ws_counter.worker.core.state import CounterState


class Outcome(StrEnum):
    """How an increment ended, as its client knows it."""

    ACKED = "acked"  # applied exactly once (an ack, with or without its seq)
    REFUSED = "refused"  # refused for good: nothing applied
    UNKNOWN = "unknown"  # the client stopped or gave up before an answer: applied 0 or 1 times


@dataclass(frozen=True, slots=True)
class Op:
    """One increment: its first send and how it ended (``state`` after it, if the ack said)."""

    client: int
    by: int
    sent_at: float
    outcome: Outcome
    answered_at: float | None = None
    state: CounterState | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """A total a client was shown."""

    client: int
    at: float
    state: CounterState


@dataclass(frozen=True, slots=True)
class Window:
    """A nemesis at work from ``start`` until ``end`` (its heal)."""

    name: str
    start: float
    end: float


@dataclass
class History:
    """One run: the counter's state before and after, and everything in between."""

    start: CounterState
    final: CounterState | None = None
    ops: list[Op] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0
