"""redis-py's exceptions mapped onto the worker's, by class, in this one place.

What a failure means depends on how far the request got, so the caller says:

* ``sent=False`` while a connection is taken from the pool (and connected):
  nothing has left the worker, so nothing can have been applied;
* ``sent=True`` from the first byte written until the last reply is read: a
  connection that fails then may have delivered the request, so the outcome is
  unknown and only a retry with the same id or session number is safe.

A reply that is an error is Redis' own answer and means the step did not run:
replies that say "not now" (loading, read-only replica, out of memory, a
cluster in flux) are unavailability; any other error is a rejection. Scripts
that write declare it (``#!lua``), so Redis at maxmemory refuses them before
they run rather than at their first write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser

from ..core.protocol import Unavailable
from ..errors import OutcomeUnknown, StoreFull, StoreRejected, StoreUnavailable


class NoReplicasError(redis_errors.ResponseError):
    """NOREPLICAS: a primary that has heard from fewer replicas than min-replicas-to-write
    (within min-replicas-max-lag) refuses writes: cut off from them, or they are down."""


def register_error_classes() -> None:
    """Name NOREPLICAS by class in redis-py's table of error prefixes (both of its parsers
    read it), which lacks it, so that it is mapped by class like READONLY or LOADING."""
    BaseParser.EXCEPTION_CLASSES.setdefault("NOREPLICAS", NoReplicasError)


# Replies by which Redis refuses to run a command now; it ran nothing.
NOT_NOW: tuple[type[redis_errors.RedisError], ...] = (
    NoReplicasError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    redis_errors.MovedError,
    redis_errors.AskError,
)
CONNECTION_FAILED = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


@contextlib.contextmanager
def map_redis_errors(*, sent: bool) -> Iterator[None]:
    """Raise the worker's StoreError for redis-py's exceptions (``raise ... from``)."""
    try:
        yield
    except redis_errors.OutOfMemoryError as exc:
        raise StoreFull(f"Redis is at its maxmemory and refuses writes: {exc}") from exc
    except NOT_NOW as exc:
        raise StoreUnavailable(f"Redis cannot run it now: {exc}") from exc
    except redis_errors.ResponseError as exc:
        raise StoreRejected("rejected", f"Redis refused: {exc}") from exc
    except CONNECTION_FAILED as exc:
        if sent:
            raise OutcomeUnknown(f"lost contact with Redis during the request: {exc}") from exc
        raise StoreUnavailable(f"{Unavailable.REDIS}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise StoreUnavailable(f"Redis client error: {exc}") from exc
