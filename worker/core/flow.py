"""Flow control of one client connection, as a state machine without I/O.

The websockets adapter (``ws_counter.worker.server.connection``) feeds it what happened
and does what it answers. Rules:

* **The first total is the snapshot.** Until a connection has been offered
  a total it is not ``greeted``; the adapter then sends the state as a
  snapshot of its own (with ``missed`` for a resuming client) instead of the
  frame shared by every client, so every later total is newer.
* **The shared frame, or one of its own.** A greeted connection without
  extensions, with nothing queued in this turn of the loop, is written the
  frame shared by every client at once. Any other message (its snapshot, an
  ack, an error, a total on a connection with extensions, or one behind
  something queued) is queued as a frame of its own, and the first one queued
  in a turn schedules one write of all of them at its end: a connection's
  messages reach it in the order they were decided.
* **Writable, then stalled.** While the transport takes writes, a total is
  written at once. When the transport is paused (its buffer is above the
  high-water mark) the connection becomes *stalled*: the total is held
  instead, and the adapter starts waiting for the transport to drain.
* **At most one total held.** A total that arrives while stalled replaces the
  held one: a total supersedes every older one, so a slow client costs one
  message of memory, never a backlog.
* **Drained, then writable.** When the transport drains, the held total (if
  any) is written and the connection is writable again. A connection still
  stalled after ``slow_client_timeout`` is closed by the adapter with 1008.
* **A window of unacknowledged increments.** Reading stops once ``window``
  increments of the connection await their outcome and resumes when one
  comes back, so a client cannot queue unbounded work in the worker.
"""

from __future__ import annotations

import enum
from typing import Generic, TypeVar

T = TypeVar("T")


class Offer(enum.Enum):
    """What to do with a total offered to a connection."""

    SHARED = "shared"  # write the frame shared by every client now
    OWN = "own"  # queue a frame of this connection's own for this turn's write
    STALL = "stall"  # hold it and start waiting for the transport to drain
    HOLD = "hold"  # hold it; a drain wait is already under way
    REPLACE = "replace"  # hold it in place of an older held total
    CLOSED = "closed"  # the connection is closing: drop it


class Flow(Generic[T]):
    """One connection's flow control: the held total, the stall, the unacked window."""

    __slots__ = ("greeted", "held", "queued", "shareable", "stalled", "unacked", "window")

    greeted: bool
    stalled: bool
    queued: bool
    held: T | None
    unacked: int

    def __init__(self, window: int, *, shareable: bool = True) -> None:
        """``shareable``: the connection has no extension, so the shared frame fits it."""
        self.window = window
        self.shareable = shareable
        self.greeted = False
        self.stalled = False
        self.queued = False
        self.held: T | None = None
        self.unacked = 0

    def offer(self, total: T, *, open: bool, paused: bool) -> Offer:
        """A new total for this connection; ``paused``: the transport is above its high mark.

        Until the first offer the connection is not ``greeted``: the adapter
        offers its snapshot, which is always a frame of its own.
        """
        greeting = not self.greeted
        self.greeted = True
        if not open:
            return Offer.CLOSED
        if self.stalled:
            replaced = self.held is not None
            self.held = total
            return Offer.REPLACE if replaced else Offer.HOLD
        if paused:
            self.stalled = True
            self.held = total
            return Offer.STALL
        if greeting or self.queued or not self.shareable:
            return Offer.OWN
        return Offer.SHARED

    def queue(self) -> bool:
        """A frame of its own is queued; True when it is the turn's first (schedule the write)."""
        first = not self.queued
        self.queued = True
        return first

    def flushed(self) -> None:
        """The turn's queued frames were written (or dropped with the connection)."""
        self.queued = False

    def drained(self) -> T | None:
        """The transport drained: writable again; returns the held total to write, if any."""
        self.stalled = False
        held, self.held = self.held, None
        return held

    def sent(self) -> bool:
        """An increment went to Redis; True when reading must now pause."""
        self.unacked += 1
        return self.unacked >= self.window

    def settled(self) -> bool:
        """An increment's outcome came back; True when reading may go on."""
        self.unacked -= 1
        return self.unacked < self.window
