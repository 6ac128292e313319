"""The ws-counter wire protocol, without I/O.

Everything a worker reads from or writes to a client, and everything it
publishes on a counter's Redis channel, is parsed or formatted here. This
module imports neither asyncio, redis nor websockets, so that every rule can
be tested with tables of inputs.

Rules (the contract is written out for users in docs/protocol.md):

* A counter is named by the URL path: ``/`` and ``/counters/default`` are the
  counter ``default``; ``/counters/<name>`` is ``name`` (1 to 64 of
  ``a-z 0-9 _ -``). Any other path is 404, a bad name 400.
* A client sends ``{"op": "incr", "by": N, "id": "..."}`` (``id`` optional,
  at most 64 characters) or a bare integer as text. ``N`` is a signed 64-bit
  integer; booleans and floats are not integers.
* The server sends ``total``, ``ack`` and ``error`` objects. Totals and seqs
  are exact integers: they come from Redis as decimal strings and are never
  routed through a float.
* Workers publish a counter's state on its channel as ``epoch seq total``,
  the cheapest form to parse for every worker on every update.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

DEFAULT_COUNTER = "default"
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_ID_LENGTH = 64

_COUNTER_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_BARE_INTEGER = re.compile(r"[+-]?[0-9]+")
# INT64_MAX has 19 digits; longer numbers are refused before int() spends time
# on them (and before Python's 4300-digit conversion limit could raise).
_MAX_INT64_DIGITS = 19


class CloseCode:
    """WebSocket close codes the server uses (RFC 6455, section 7.4.1)."""

    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013


class ErrorCode:
    """Values of ``code`` in ``{"type": "error"}`` messages."""

    INVALID_MESSAGE = "invalid_message"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    UNKNOWN_OP = "unknown_op"
    MISSING_BY = "missing_by"
    INVALID_BY = "invalid_by"
    OUT_OF_RANGE = "out_of_range"
    INVALID_ID = "invalid_id"
    OVERFLOW = "overflow"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Increment:
    """One increment asked for by a client."""

    by: int
    id: str | None = None

    def __post_init__(self) -> None:
        if not INT64_MIN <= self.by <= INT64_MAX:
            raise ValueError(f"by={self.by} is outside the signed 64-bit range")
        if self.id is not None and not 0 < len(self.id) <= MAX_ID_LENGTH:
            raise ValueError("id must be 1 to 64 characters")


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter's state as applied in Redis: ``seq`` counts increments in ``epoch``.

    ``published_ms`` is when Redis published it (its clock, ms since the epoch),
    if it came from the channel; it is not part of the state's identity.
    """

    epoch: str
    seq: int
    total: int
    published_ms: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one increment: the state right after it was applied.

    ``duplicate`` is true when the increment's id had already been applied, in
    which case the state is the one of the original application.
    """

    state: CounterState
    duplicate: bool = False


class ClientError(Exception):
    """A client message that cannot be applied; answered with an error message."""

    def __init__(self, code: str, message: str, increment_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.increment_id = increment_id


class RouteError(Exception):
    """A request path that names no endpoint (404) or an invalid counter (400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CounterRoute:
    """What a WebSocket (or page) request path asks for."""

    counter: str
    since: int | None = None
    token: str | None = None


def is_valid_counter_name(name: str) -> bool:
    return _COUNTER_NAME.fullmatch(name) is not None


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
    if path == "/":
        name = DEFAULT_COUNTER
    elif path.startswith("/counters/"):
        name = path.removeprefix("/counters/")
        if not is_valid_counter_name(name):
            raise RouteError(400, "counter names are 1 to 64 of a-z 0-9 _ -")
    else:
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
        if len(text.lstrip("+-").lstrip("0")) > _MAX_INT64_DIGITS:
            raise ClientError(ErrorCode.OUT_OF_RANGE, "by must be within the signed 64-bit range")
        return _increment(int(text), None)
    try:
        document = json.loads(text)
    except ValueError:
        raise ClientError(
            ErrorCode.INVALID_MESSAGE,
            'expected an integer or {"op": "incr", "by": <integer>}',
        ) from None
    if not isinstance(document, dict):
        raise ClientError(
            ErrorCode.INVALID_MESSAGE, 'expected a JSON object {"op": "incr", "by": <integer>}'
        )
    return _increment_from_object(document)


def _increment_from_object(document: dict[str, Any]) -> Increment:
    increment_id = document.get("id")
    if increment_id is not None and (
        not isinstance(increment_id, str) or not 0 < len(increment_id) <= MAX_ID_LENGTH
    ):
        raise ClientError(ErrorCode.INVALID_ID, "id must be a string of 1 to 64 characters")
    op = document.get("op")
    if op != "incr":
        raise ClientError(
            ErrorCode.UNKNOWN_OP, f"unknown op {_short(op)}; the only op is incr", increment_id
        )
    if "by" not in document:
        raise ClientError(ErrorCode.MISSING_BY, "incr needs by: an integer", increment_id)
    by = document["by"]
    # bool is a subclass of int in Python, but true is not a number to add.
    if not isinstance(by, int) or isinstance(by, bool):
        raise ClientError(
            ErrorCode.INVALID_BY, f"by must be an integer, not {_short(by)}", increment_id
        )
    return _increment(by, increment_id)


def _increment(by: int, increment_id: str | None) -> Increment:
    if not INT64_MIN <= by <= INT64_MAX:
        raise ClientError(
            ErrorCode.OUT_OF_RANGE,
            "by must be within the signed 64-bit range",
            increment_id,
        )
    return Increment(by, increment_id)


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def total_message(counter: str, state: CounterState, missed: bool | None = None) -> str:
    document: dict[str, Any] = {
        "type": "total",
        "counter": counter,
        "total": state.total,
        "seq": state.seq,
        "epoch": state.epoch,
    }
    if missed is not None:
        document["missed"] = missed
    return _dumps(document)


def ack_message(increment: Increment, applied: Applied) -> str:
    document: dict[str, Any] = {
        "type": "ack",
        "id": increment.id,
        "total": applied.state.total,
        "seq": applied.state.seq,
        "epoch": applied.state.epoch,
    }
    if applied.duplicate:
        document["duplicate"] = True
    return _dumps(document)


def error_message(code: str, message: str, increment_id: str | None = None) -> str:
    document: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if increment_id is not None:
        document["id"] = increment_id
    return _dumps(document)


def missed_updates(since: int | None, state: CounterState) -> bool | None:
    """Whether a client resuming at ``since`` missed updates before ``state``.

    None when the client did not say where it was. A client that is ahead of
    the counter (a seq from an older epoch) has missed the reset itself.
    """
    if since is None:
        return None
    return since != state.seq


def encode_state(state: CounterState) -> str:
    return f"{state.epoch} {state.seq} {state.total}"


def decode_state(payload: bytes | str) -> CounterState:
    """Parse ``epoch seq total [published_ms]``; raises ValueError if malformed."""
    text = payload.decode() if isinstance(payload, bytes) else payload
    parts = text.split(" ")
    if len(parts) == 4:
        epoch, seq, total, published = parts
        return CounterState(epoch, int(seq), int(total), int(published))
    epoch, seq, total = parts
    return CounterState(epoch=epoch, seq=int(seq), total=int(total))
