"""The exceptions ws-counter raises across module boundaries.

::

    CounterError
    ├── StoreUnavailable        Redis could not be reached or did not answer
    │   └── OutcomeUnknown      the request may have reached Redis: retry with the same id
    └── StoreRejected           Redis refused the request (for example an overflow)

Only worker.store raises these, translating redis-py's exceptions in one place
(``raise ... from exc``). Client mistakes are protocol.ClientError, which never
reaches Redis.
"""

from __future__ import annotations


class CounterError(Exception):
    """Base class of ws-counter's own errors."""


class StoreUnavailable(CounterError):
    """Redis is unreachable; the increment was not applied."""


class OutcomeUnknown(StoreUnavailable):
    """The connection failed after the request was sent: it may or may not be applied."""


class StoreRejected(CounterError):
    """Redis answered with an error for this request."""
