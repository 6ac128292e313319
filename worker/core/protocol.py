"""The ws-counter wire protocol, without I/O.

Everything a worker reads from or writes to a client, and everything it
publishes on a counter's Redis channel, is parsed or formatted here. This
module imports neither asyncio, redis nor websockets, so that every rule can
be tested with tables of inputs.

Rules (the contract is written out for users in docs/protocol.md):

* A counter is named by the URL path: ``/`` and ``/counters/default`` are the
  counter ``default``; ``/counters/<name>`` is ``name`` (1 to 64 of
  ``a-z 0-9 _ -``). Any other path is 404, a bad name 400.
* A client sends ``{"op": "incr", "by": N, "session": "S", "n": K}``,
  ``{"op": "incr", "by": N, "id": "..."}`` or ``{"op": "incr", "by": N}``, or
  a bare integer as text. ``N`` is a signed 64-bit integer; booleans and
  floats are not integers. ``S`` is 8 to 64 of ``A-Z a-z 0-9 _ -``, ``K`` an
  integer from 1 to 2**53 (exact in Lua's doubles); ``id`` is 1 to 64
  characters. An increment carries a session and number, or an id, or neither.
  The exactly-once rules for sessions are in ``worker/store/lua/increment.lua``.
* The server sends ``total``, ``ack`` and ``error`` objects. Totals and seqs
  are exact integers: they come from Redis as decimal strings and are never
  routed through a float.
* A counter's state on its Redis channel is ``ws_counter.worker.core.state``'s concern.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeGuard, cast
from urllib.parse import parse_qs

import orjson

from ..errors import (
    ClientError,
    NotApplied,
    OutcomeUnknown,
    RouteError,
    StoreFull,
    StoreRejected,
    by_class,
)
from .state import Applied, CounterState, rebuilt_from_fields

DEFAULT_COUNTER = "default"
COUNTERS_PREFIX = "/counters/"
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_ID_LENGTH = 64
# Session numbers stay exact in Lua, whose numbers are doubles.
MAX_SESSION_N = 2**53
SESSION_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")

_COUNTER_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_BARE_INTEGER = re.compile(r"[+-]?[0-9]+")
# INT64_MAX has 19 digits; longer numbers are refused before int() spends time
# on them (and before Python's 4300-digit conversion limit could raise).
_MAX_INT64_DIGITS = 19


class CloseCode:
    """WebSocket close codes the server uses (RFC 6455, section 7.4.1)."""

    POLICY_VIOLATION: Final = 1008
    MESSAGE_TOO_BIG: Final = 1009
    SERVICE_RESTART: Final = 1012
    TRY_AGAIN_LATER: Final = 1013


class ErrorCode(StrEnum):
    """Values of ``code`` in error objects, over WebSockets and HTTP alike.

    The first group answers an increment; the second refuses an HTTP request
    before its increment was read (docs/protocol.md has both tables).
    """

    INVALID_MESSAGE = "invalid_message"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    UNKNOWN_OP = "unknown_op"
    MISSING_BY = "missing_by"
    INVALID_BY = "invalid_by"
    OUT_OF_RANGE = "out_of_range"
    INVALID_ID = "invalid_id"
    INVALID_SESSION = "invalid_session"
    INVALID_N = "invalid_n"
    OUT_OF_ORDER = "out_of_order"
    OVERFLOW = "overflow"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"

    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BAD_REQUEST = "bad_request"
    INTERNAL_ERROR = "internal_error"


class Unavailable:
    """Why the worker cannot take a request now: the one wording of each reason."""

    REDIS: Final = "Redis is unavailable"
    DRAINING: Final = "worker is shutting down"
    AT_CONNECTION_LIMIT: Final = "worker is at its connection limit"


def unavailable_reason(
    *, draining: bool, redis_up: bool, at_connection_limit: bool = False
) -> str | None:
    """Why a new connection or increment must be refused with 503/``unavailable``, if so."""
    if draining:
        return Unavailable.DRAINING
    if not redis_up:
        return Unavailable.REDIS
    return Unavailable.AT_CONNECTION_LIMIT if at_connection_limit else None


# The checks every path (WebSocket, HTTP, the client library) makes, each written once.


def in_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def is_integer(value: object) -> TypeGuard[int]:
    """An integer of JSON: bool is a subclass of int in Python, but true is not a number."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def is_valid_session(value: object) -> bool:
    return isinstance(value, str) and SESSION_PATTERN.fullmatch(value) is not None


def is_valid_n(value: object) -> bool:
    return is_integer(value) and 1 <= value <= MAX_SESSION_N


def by_problem(by: object) -> tuple[ErrorCode, str] | None:
    """What is wrong with ``by`` (the error code and its words), or None: the protocol's
    one rule for it, on both sides (``check_by``, ``increment_from_object``)."""
    if not is_integer(by):
        return ErrorCode.INVALID_BY, f"by must be an integer, not {short(by)}"
    if not in_int64(by):
        return ErrorCode.OUT_OF_RANGE, "by must be within the signed 64-bit range"
    return None


def check_by(by: object) -> int:
    """``by`` as the protocol takes it; ValueError before anything is numbered or sent.

    It takes any object: a client's ``by`` comes from its caller, and the
    compiled build checks a parameter's declared type before its body runs.
    """
    problem = by_problem(by)
    if problem is not None:
        raise ValueError(problem[1])
    return cast(int, by)  # by_problem found an integer in range


@dataclass(frozen=True, slots=True)
class Increment:
    """One increment asked for by a client: by an id, by a session's number, or bare."""

    by: int
    id: str | None = None
    session: str | None = None
    n: int | None = None

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return rebuilt_from_fields(self)

    def __post_init__(self) -> None:
        check_by(self.by)
        if self.id is not None and not is_valid_id(self.id):
            raise ValueError("id must be 1 to 64 characters")
        if (self.session is None) != (self.n is None):
            raise ValueError("session and n go together")
        if self.session is not None and self.id is not None:
            raise ValueError("an increment has an id or a session, not both")
        if self.session is not None and not is_valid_session(self.session):
            raise ValueError("session must be 8 to 64 of A-Z a-z 0-9 _ -")
        if self.n is not None and not is_valid_n(self.n):
            raise ValueError(f"n must be from 1 to {MAX_SESSION_N}")

    @property
    def echo(self) -> dict[str, object]:
        """What identifies this increment to its client in the ack or error."""
        if self.session is not None:
            return {"session": self.session, "n": self.n}
        if self.id is not None:
            return {"id": self.id}
        return {}


@dataclass(frozen=True, slots=True)
class CounterRoute:
    """What a WebSocket (or page) request path asks for."""

    counter: str
    since: int | None = None
    token: str | None = None

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return rebuilt_from_fields(self)


def is_valid_counter_name(name: str) -> bool:
    return _COUNTER_NAME.fullmatch(name) is not None


def counter_of_path(path: str) -> str | None:
    """The counter ``/counters/<name>`` names; None for another path.

    Raises RouteError(400) for a counter path with an invalid name.
    """
    if not path.startswith(COUNTERS_PREFIX):
        return None
    name = path.removeprefix(COUNTERS_PREFIX)
    if not is_valid_counter_name(name):
        raise RouteError(400, "counter names are 1 to 64 of a-z 0-9 _ -")
    return name


def split_path(target: str) -> tuple[str, str]:
    """Split a request target into its path and its query string."""
    path, _, query = target.partition("?")
    return path, query


def parse_counter_route(target: str) -> CounterRoute:
    """Parse a request target such as ``/counters/votes?since=41``.

    Raises RouteError with 404 for paths that are not counters and 400 for a
    counter path with an invalid name or query.
    """
    path, query = split_path(target)
    name = DEFAULT_COUNTER if path == "/" else counter_of_path(path)
    if name is None:
        raise RouteError(404, "no such endpoint")
    params = parse_qs(query, keep_blank_values=True)
    since = _single_param(params, "since")
    token = _single_param(params, "token")
    if since is not None and (_BARE_INTEGER.fullmatch(since) is None or len(since) > 20):
        raise RouteError(400, "since must be an integer")
    return CounterRoute(
        counter=name,
        since=int(since) if since is not None else None,
        token=token,
    )


def _single_param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RouteError(400, f"{name} given more than once")
    return values[0]


def parse_client_message(message: str | bytes) -> Increment:
    """Parse one client frame into an Increment, or raise ClientError."""
    if isinstance(message, bytes):
        raise ClientError(ErrorCode.BINARY_NOT_SUPPORTED, "send text frames, not binary")
    text = message.strip()
    if _BARE_INTEGER.fullmatch(text):
        # A number too long for 64 bits is refused before int() spends time on it.
        short_enough = len(text.lstrip("+-").lstrip("0")) <= _MAX_INT64_DIGITS
        by = int(text) if short_enough else INT64_MAX + 1
        problem = by_problem(by)
        if problem is not None:
            raise ClientError(*problem)
        return Increment(by)
    try:
        document = loads(text)
    except ValueError:
        raise ClientError(
            ErrorCode.INVALID_MESSAGE,
            'expected an integer or {"op": "incr", "by": <integer>}',
        ) from None
    if not isinstance(document, dict):
        raise ClientError(
            ErrorCode.INVALID_MESSAGE, 'expected a JSON object {"op": "incr", "by": <integer>}'
        )
    return increment_from_object(document)


def increment_from_object(document: dict[str, Any]) -> Increment:
    echo = increment_echo(document)
    op = document.get("op")
    if op != "incr":
        raise ClientError(
            ErrorCode.UNKNOWN_OP, f"unknown op {short(op)}; the only op is incr", echo
        )
    if "by" not in document:
        raise ClientError(ErrorCode.MISSING_BY, "incr needs by: an integer", echo)
    by = document["by"]
    problem = by_problem(by)
    if problem is not None:
        raise ClientError(*problem, echo)
    return Increment(by, echo.get("id"), echo.get("session"), echo.get("n"))


def increment_echo(document: dict[str, Any]) -> dict[str, Any]:
    """The increment's id, or its session and n, validated; ClientError if malformed."""
    increment_id = document.get("id")
    if increment_id is not None and not is_valid_id(increment_id):
        raise ClientError(ErrorCode.INVALID_ID, "id must be a string of 1 to 64 characters")
    session, n = document.get("session"), document.get("n")
    if session is None and n is None:
        return {} if increment_id is None else {"id": increment_id}
    if not is_valid_session(session):
        raise ClientError(
            ErrorCode.INVALID_SESSION, "session must be a string of 8 to 64 of A-Z a-z 0-9 _ -"
        )
    if not is_valid_n(n):
        raise ClientError(
            ErrorCode.INVALID_N,
            f"n must be an integer from 1 to {MAX_SESSION_N}, numbering the session's increments",
            {"session": session},
        )
    if increment_id is not None:
        raise ClientError(
            ErrorCode.INVALID_MESSAGE,
            "give an increment a session and n, or an id, not both",
            {"session": session, "n": n},
        )
    return {"session": session, "n": n}


def short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def loads(text: str) -> Any:
    """orjson where it can (the json module showed in profiles of the throughput run:
    docs/performance.md), the standard library where orjson refuses or changes what json accepts
    (integers beyond 64 bits, NaN, lone surrogates), so every message gets its old answer."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    # orjson reads an integer beyond 64 bits as a float; json keeps it an exact
    # integer, which then gets its out_of_range answer. No valid message has a float.
    if isinstance(document, dict) and any(isinstance(v, float) for v in document.values()):
        return json.loads(text)
    return document


def _dumps(document: dict[str, Any]) -> str:
    return orjson.dumps(document).decode()


def state_document(counter: str, state: CounterState) -> dict[str, Any]:
    """A counter's state as both protocols give it: the WebSocket's total message and the
    HTTP API's GET /counters/<name> (docs/protocol.md)."""
    return {"counter": counter, "total": state.total, "seq": state.seq, "epoch": state.epoch}


def total_message(counter: str, state: CounterState, missed: bool | None = None) -> str:
    document: dict[str, Any] = {"type": "total", **state_document(counter, state)}
    if missed is not None:
        document["missed"] = missed
    return _dumps(document)


def ack_message(increment: Increment, applied: Applied) -> str:
    document: dict[str, Any] = {"type": "ack"}
    document.update(increment.echo if increment.session is not None else {"id": increment.id})
    document.update(total=applied.state.total, seq=applied.state.seq, epoch=applied.state.epoch)
    if applied.duplicate:
        document["duplicate"] = True
    return _dumps(document)


def applied_earlier_message(increment: Increment, window: int) -> str:
    """The ack of a session's increment that is older than the outcomes Redis keeps."""
    return _dumps(
        {
            "type": "ack",
            **increment.echo,
            "duplicate": True,
            "message": f"applied earlier; its total is no longer kept (only the last {window}"
            " of a session are), so this ack has no total",
        }
    )


def error_message(
    code: str, message: str, increment_id: str | None = None, /, **echo: object
) -> str:
    document: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if increment_id is not None:
        document["id"] = increment_id
    document.update(echo)
    return _dumps(document)


def missed_updates(since: int | None, state: CounterState) -> bool | None:
    """Whether a client resuming at ``since`` missed updates before ``state``.

    None when the client did not say where it was. A client that is ahead of
    the counter (a seq from an older epoch) has missed the reset itself.
    """
    if since is None:
        return None
    return since != state.seq


def failure_message(increment: Increment, failure: BaseException) -> tuple[str, str]:
    """The code and the error message for an increment that was not (or not knowingly)
    applied."""
    echo = increment.echo
    if isinstance(failure, StoreRejected):
        if failure.code == ErrorCode.OVERFLOW:
            text = "the total would leave the signed 64-bit range; not applied"
            return failure.code, error_message(failure.code, text, **echo)
        if failure.code == ErrorCode.OUT_OF_ORDER:
            text = (
                f"this session expected n={failure.expected}; nothing applied: send the"
                " session's increments in order, from the expected one"
            )
            message = error_message(failure.code, text, expected=failure.expected, **echo)
            return failure.code, message
        return ErrorCode.REJECTED, error_message(ErrorCode.REJECTED, failure.message, **echo)
    if isinstance(failure, OutcomeUnknown):
        again = "the same session and n" if increment.session is not None else "the same id"
        text = (
            "lost contact with Redis while applying: the increment may or may not have been"
            f" applied; retry with {again} to apply it exactly once"
        )
    else:
        text = by_class(NOT_APPLIED_TEXT, failure) or "internal error; not applied"
    return ErrorCode.UNAVAILABLE, error_message(ErrorCode.UNAVAILABLE, text, **echo)


# What a client is told of an increment that was not applied, by the failure's class.
NOT_APPLIED_TEXT: dict[type[BaseException], str] = {
    StoreFull: "Redis is out of memory and refuses writes; the increment was not applied",
    NotApplied: f"{Unavailable.REDIS}; the increment was not applied",
}


def incr_message(
    by: object,
    increment_id: str | None = None,
    *,
    session: str | None = None,
    n: int | None = None,
) -> str:
    """The client's side: an increment as a client sends it (ValueError for a bad ``by``)."""
    checked = check_by(by)
    return _dumps(
        {"op": "incr", "by": checked, **Increment(checked, increment_id, session, n).echo}
    )
