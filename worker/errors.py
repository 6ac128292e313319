"""The exceptions of the worker, in one tree.

::

    WorkerError
    ├── SettingsError             a setting has an invalid value; names the variable or flag
    ├── Refused                   a request refused before it reaches Redis; carries .status
    │   ├── RouteError            a path that names no endpoint (404) or a bad counter (400)
    │   └── AuthError             no or a bad token (401), a token without access (403)
    ├── ClientError               a client message that cannot be applied; carries .code
    └── StoreError                the step between the worker and Redis failed
        ├── NotApplied            nothing was applied
        │   ├── StoreUnavailable  Redis could not be reached, or would not run it now
        │   ├── StoreFull         Redis is at maxmemory (noeviction) and refuses writes
        │   ├── StoreMisconfigured  Redis refused our credentials, certificate or ACL
        │   └── StoreRejected     Redis ran it and refused this increment; carries .code
        └── OutcomeUnknown        the request may have reached Redis: retry it unchanged

Redis' own exceptions are mapped onto StoreError in exactly one place,
``ws_counter.worker.store.errors.map_redis_errors``. Every other kind is raised by a pure
module of ``ws_counter.worker.core`` or by settings loading, and answered at the edge:
a status for an HTTP request, an error message with ``code`` for a client.
This module imports nothing of the worker, so that every layer may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Meaning = TypeVar("Meaning")


class WorkerError(Exception):
    """Base class of the worker's own errors."""


class SettingsError(WorkerError, ValueError):
    """A setting has an invalid value; the message names the variable or flag."""


class Refused(WorkerError):
    """A request refused with an HTTP status before anything reaches Redis."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RouteError(Refused):
    """A request path that names no endpoint (404) or an invalid counter (400)."""


class AuthError(Refused):
    """A handshake refused for its token: 401 for no or a bad token, 403 for no access."""


class ClientError(WorkerError):
    """A client message that cannot be applied; answered with an error message.

    ``echo`` holds what identifies the increment to its client (its ``id``, or
    its ``session`` and ``n``) as far as the message gave them validly.
    """

    def __init__(self, code: str, message: str, echo: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.echo = echo or {}

    @property
    def increment_id(self) -> object:
        return self.echo.get("id")


class StoreError(WorkerError):
    """The step between the worker and Redis failed."""


class NotApplied(StoreError):
    """Nothing of the request was applied: sending it again cannot apply anything twice."""


class StoreUnavailable(NotApplied):
    """Redis is unreachable or would not run the request now; nothing was applied."""


class StoreMisconfigured(NotApplied):
    """Redis refused the worker's credentials, TLS or ACL permissions: nothing was applied,
    and nothing will be until a setting changes; the message names it."""


class StoreFull(NotApplied):
    """Redis is at its maxmemory with noeviction: it refuses writes until memory is freed."""


class OutcomeUnknown(StoreError):
    """The connection failed after the request was sent: it may or may not be applied."""


class StoreRejected(NotApplied):
    """Redis ran the step and refused this increment; ``code`` says why.

    ``overflow``: the total would leave the 64-bit range. ``out_of_order``: a
    session's number came before the one expected, given as ``expected``.
    """

    def __init__(self, code: str, message: str, expected: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.expected = expected

    def __reduce__(self) -> tuple[type[StoreRejected], tuple[str, str, int | None]]:
        # Pickled (between a load test's processes) with every argument, not just the message.
        return type(self), (self.code, self.message, self.expected)


def by_class(table: Mapping[type[BaseException], Meaning], exc: BaseException) -> Meaning | None:
    """What ``table`` says of the nearest of ``exc``'s classes (along its MRO) that it names:
    how an error is mapped by class, the most specific entry first, whatever the order."""
    return next((table[kind] for kind in type(exc).__mro__ if kind in table), None)
