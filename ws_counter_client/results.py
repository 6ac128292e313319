"""What a client hands its caller: totals, acks, and the errors, in one tree.

::

    CounterClientError
    ├── ConnectionRefused     the worker refused the handshake with a status a retry cannot change
    ├── CertificateRejected   the server's TLS certificate is not trusted (give the CA)
    ├── IncrementRefused      an increment refused for good; carries .code; nothing applied
    ├── IncrementUnknown      what became of an increment cannot be known; never sent again
    └── ClientClosed          the client stopped before the increment was acknowledged
"""

from __future__ import annotations

from dataclasses import dataclass

from ws_counter.worker.core.state import CounterState


class CounterClientError(Exception):
    """Base class of the client's errors."""


class ConnectionRefused(CounterClientError):
    """The worker refused the handshake with a status a retry cannot change."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class CertificateRejected(CounterClientError):
    """The server's TLS certificate failed verification: no retry can change that. Trust
    its CA (``connect(..., ssl=ssl.create_default_context(cafile=...))``, or ``--ca``)."""


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
    """The client stopped before the increment was acknowledged: it may or may not apply."""


@dataclass(frozen=True, slots=True)
class Total:
    """A counter's state as a client sees it: the worker's own ``CounterState``.

    ``missed`` is true on the first total after a resume that skipped updates.
    ``total``, ``seq`` and ``epoch`` read the state's fields.
    """

    counter: str
    state: CounterState
    missed: bool = False

    @property
    def total(self) -> int:
        return self.state.total

    @property
    def seq(self) -> int:
        """How many increments ``epoch`` has applied."""
        return self.state.seq

    @property
    def epoch(self) -> str:
        return self.state.epoch


@dataclass(frozen=True, slots=True)
class Ack:
    """An increment applied exactly once.

    ``session`` and ``n``, or ``id``, name it. ``total``, ``seq`` and ``epoch``
    are the state right after it, or None when it was applied so long ago that
    the worker no longer keeps its outcome. ``duplicate``: this answer is to a
    resend of an increment applied before.
    """

    session: str | None
    n: int | None
    total: int | None
    seq: int | None
    epoch: str | None
    duplicate: bool = False
    id: str | None = None
