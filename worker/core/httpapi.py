"""The HTTP API's rules, without I/O: routes, content negotiation, bodies and statuses.

Backends that only add to a counter, or read it, use plain HTTP on the
worker's port (the contract is in docs/protocol.md, the description in
``worker/server/web/openapi.json``):

* ``GET /counters/<name>`` with ``Accept: application/json``: the counter's
  state, ``{"counter", "total", "seq", "epoch"}``. Without it, the same path
  is the counter page.
* ``POST /counters/<name>/increments`` with ``{"by": N}``, plus ``"session"``
  and ``"n"`` or an ``Idempotency-Key`` header: the same ack a WebSocket
  client gets, applied and published exactly like a WebSocket increment.

Errors are the WebSocket protocol's error objects, with the HTTP status
``STATUS_OF_CODE`` gives their code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ClientError
from .protocol import (
    COUNTERS_PREFIX,
    ErrorCode,
    Increment,
    counter_of_path,
    increment_from_object,
    is_valid_id,
    loads,
    split_path,
)

JSON = "application/json"
INCREMENTS_SUFFIX = "/increments"
# Paths that are not counters.
CLIENT_SCRIPT_PATH = "/client.js"
OPENAPI_PATH = "/openapi.json"
FIXED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", CLIENT_SCRIPT_PATH, OPENAPI_PATH})

# The HTTP status of each error code. A refusal that nothing applied and that
# may succeed later is 429 or 503 (send the same request again); one that
# conflicts with the counter or the session's numbering is 409.
STATUS_OF_CODE: dict[str, int] = {
    ErrorCode.INVALID_MESSAGE: 400,
    ErrorCode.BINARY_NOT_SUPPORTED: 400,
    ErrorCode.UNKNOWN_OP: 400,
    ErrorCode.MISSING_BY: 400,
    ErrorCode.INVALID_BY: 400,
    ErrorCode.OUT_OF_RANGE: 400,
    ErrorCode.INVALID_ID: 400,
    ErrorCode.INVALID_SESSION: 400,
    ErrorCode.INVALID_N: 400,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.OUT_OF_ORDER: 409,
    ErrorCode.OVERFLOW: 409,
    ErrorCode.REJECTED: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}
# The code of each status a Refused (route, token, admission) carries.
CODE_OF_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    503: ErrorCode.UNAVAILABLE,
}


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """A request target of the HTTP API: a counter's state or its increments."""

    counter: str
    increments: bool


def parse_api_route(target: str) -> ApiRoute | None:
    """The counter a target names, or None for any other path.

    Raises RouteError(400) for a counter path with an invalid name.
    """
    path, _ = split_path(target)
    # "/counters/increments" is the counter named "increments", not its increments.
    increments = path.removeprefix(COUNTERS_PREFIX).endswith(INCREMENTS_SUFFIX)
    name = counter_of_path(path.removesuffix(INCREMENTS_SUFFIX) if increments else path)
    return None if name is None else ApiRoute(name, increments)


def media_type(header: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return (header or "").partition(";")[0].strip().lower()


def wants_json(accept: str | None) -> bool:
    """Whether a GET of a counter asks for its state rather than its page.

    JSON when ``application/json`` is acceptable and HTML is not asked for:
    browsers ask for ``text/html`` and get the page; ``curl`` without a header
    (``*/*``) gets the page too.
    """
    kinds = {media_type(part) for part in (accept or "").split(",")}
    return JSON in kinds and "text/html" not in kinds


def parse_increment_body(body: bytes, idempotency_key: str | None) -> Increment:
    """The increment a POST asks for, or ClientError.

    The body is ``{"by": N}`` with the optional ``"session"`` and ``"n"`` of a
    WebSocket increment (``"op": "incr"`` may be given; no other op); an
    ``Idempotency-Key`` header plays the part of the WebSocket ``id``.
    """
    try:
        document = loads(body.decode())
    except (UnicodeDecodeError, ValueError):
        raise ClientError(
            ErrorCode.INVALID_MESSAGE, 'expected a JSON object {"by": <integer>}'
        ) from None
    if not isinstance(document, dict):
        raise ClientError(ErrorCode.INVALID_MESSAGE, 'expected a JSON object {"by": <integer>}')
    if "id" in document:
        raise ClientError(
            ErrorCode.INVALID_MESSAGE, "over HTTP an increment's id is its Idempotency-Key header"
        )
    if idempotency_key is not None:
        if not is_valid_id(idempotency_key):
            raise ClientError(ErrorCode.INVALID_ID, "Idempotency-Key must be 1 to 64 characters")
        if "session" in document or "n" in document:
            raise ClientError(
                ErrorCode.INVALID_MESSAGE,
                "give an increment a session and n, or an Idempotency-Key, not both",
            )
        document = {**document, "id": idempotency_key}
    return increment_from_object({"op": "incr", **document})


def status_of(code: str) -> int:
    return STATUS_OF_CODE.get(code, 500)
