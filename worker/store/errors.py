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
import ssl
from collections.abc import Callable, Iterator

from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser

from ..core.protocol import Unavailable
from ..errors import (
    OutcomeUnknown,
    StoreError,
    StoreFull,
    StoreMisconfigured,
    StoreRejected,
    StoreUnavailable,
    by_class,
)


class NoReplicasError(redis_errors.ResponseError):
    """NOREPLICAS: a primary that has heard from fewer replicas than min-replicas-to-write
    (within min-replicas-max-lag) refuses writes: cut off from them, or they are down."""


def register_error_classes() -> None:
    """Name NOREPLICAS by class in redis-py's table of error prefixes (both of its parsers
    read it), which lacks it, so that it is mapped by class like READONLY or LOADING."""
    BaseParser.EXCEPTION_CLASSES.setdefault("NOREPLICAS", NoReplicasError)


def _not_now(exc: BaseException, sent: bool) -> StoreError:
    return StoreUnavailable(f"Redis cannot run it now: {exc}")


def _full(exc: BaseException, sent: bool) -> StoreError:
    return StoreFull(f"Redis is at its maxmemory and refuses writes: {exc}")


def _refused(exc: BaseException, sent: bool) -> StoreError:
    return StoreRejected("rejected", f"Redis refused: {exc}")


def _lost(exc: BaseException, sent: bool) -> StoreError:
    """The "was it sent" rule: a connection that failed before the request left the
    worker applied nothing; after, it may have."""
    if sent:
        return OutcomeUnknown(f"lost contact with Redis during the request: {exc}")
    return StoreUnavailable(f"{Unavailable.REDIS}: {exc}")


def _client_failed(exc: BaseException, sent: bool) -> StoreError:
    return StoreUnavailable(f"Redis client error: {exc}")


# redis-py's exception classes and what each means, looked up along the
# exception's own classes (its MRO), nearest first: BusyLoadingError is a
# ConnectionError to redis-py, but a LOADING reply means Redis ran nothing.
MAPPED: dict[type[BaseException], Callable[[BaseException, bool], StoreError]] = {
    # Replies by which Redis refuses to run a command now; it ran nothing.
    NoReplicasError: _not_now,
    redis_errors.BusyLoadingError: _not_now,
    redis_errors.ReadOnlyError: _not_now,
    redis_errors.MasterDownError: _not_now,
    redis_errors.TryAgainError: _not_now,
    redis_errors.ClusterDownError: _not_now,
    redis_errors.MovedError: _not_now,
    redis_errors.AskError: _not_now,
    redis_errors.OutOfMemoryError: _full,
    # Any other reply that is an error: Redis' own answer, the step did not run.
    redis_errors.ResponseError: _refused,
    redis_errors.ConnectionError: _lost,
    redis_errors.TimeoutError: _lost,
    OSError: _lost,
    redis_errors.RedisError: _client_failed,
}


@contextlib.contextmanager
def map_redis_errors(*, sent: bool) -> Iterator[None]:
    """Raise the worker's StoreError for redis-py's exceptions (``raise ... from``).

    A failure only a setting cures (credentials, certificates, ACL) is told
    apart first, whatever class redis-py gave it: ``misconfiguration``.
    """
    try:
        yield
    except (redis_errors.RedisError, OSError) as exc:
        wrong = misconfiguration(exc)
        if wrong is not None:
            raise StoreMisconfigured(wrong) from exc
        raise _store_error(exc, sent=sent) from exc


def _store_error(exc: BaseException, *, sent: bool) -> StoreError:
    return (by_class(MAPPED, exc) or _client_failed)(exc, sent)


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH.
NAME_MISMATCH = frozenset({62, 64})
CREDENTIALS_REFUSED = (
    redis_errors.AuthenticationError,
    redis_errors.AuthenticationWrongNumberOfArgsError,
)


def misconfiguration(exc: BaseException, *, sentinel: bool = False) -> str | None:
    """What to fix when ``exc`` says the worker's own settings are wrong, naming the
    setting; None for a failure that waiting may cure (Redis down, a network fault).

    Judged by class along the exception's chain: redis-py raises its own
    ConnectionError from the ssl module's error.
    """
    user, password, tls = (
        ("REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_TLS")
        if sentinel
        else ("REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_TLS")
    )
    for link in _chain(exc):
        if isinstance(link, CREDENTIALS_REFUSED):
            return f"Redis refused the credentials ({link}): check {user} and {password}"
        if isinstance(link, redis_errors.NoPermissionError) or _refused_in_script(link):
            return (
                f"the Redis user lacks a permission the worker needs ({link}): give {user} the"
                " ACL in docs/operations.md"
            )
        if isinstance(link, ssl.SSLCertVerificationError):
            if link.verify_code in NAME_MISMATCH:
                return (
                    f"Redis' certificate does not name the host connected to ({link}): connect"
                    " by a name the certificate holds, or set REDIS_TLS_CHECK_HOSTNAME=false"
                )
            return (
                f"Redis' certificate is not trusted ({link}): set REDIS_TLS_CA_FILE to the CA"
                " that signed it"
            )
        if isinstance(link, ssl.SSLError):
            return (
                f"the TLS handshake with Redis failed ({link}): check {tls} (is that port TLS?)"
                " and REDIS_TLS_CERT_FILE / REDIS_TLS_KEY_FILE"
            )
    return None


def _refused_in_script(exc: BaseException) -> bool:
    """An ACL refusal of a command a Lua step called: Redis gives it no error code of its
    own (not NOPERM), only this text, from 7.0 on."""
    return isinstance(exc, redis_errors.ResponseError) and (
        "user executing the script can't" in str(exc)
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def reset_hint(exc: BaseException) -> str:
    """A hint for a connection reset by its peer: a plain connection to a TLS port is
    reset so, which nothing else tells apart from a Redis that went away."""
    if any(isinstance(link, ConnectionResetError) for link in _chain(exc)):
        return " (a TLS port resets plain connections: if it is one, set REDIS_TLS=true)"
    return ""
