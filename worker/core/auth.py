"""Signed access tokens: which counters a client may read and which it may increment.

Tokens are JWTs signed with HS256 and a secret from the environment. Claims:

* ``read``: counter names the client may watch; ``"*"`` stands for every counter.
* ``incr``: counter names the client may increment; implies read.
* ``exp`` (optional, recommended): expiry, checked at the handshake.

A client passes its token as ``?token=...`` (browsers cannot set headers on a
WebSocket) or as ``Authorization: Bearer ...``. No I/O here: the worker calls
``authorize`` during the handshake and keeps the Grant for the connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from ..errors import AuthError

ALGORITHMS = ["HS256"]
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Grant:
    """What one connection may do with its counter."""

    read: bool
    incr: bool


# Everything, for workers that run without a token secret.
OPEN = Grant(read=True, incr=True)


def token_from(query_token: str | None, authorization: str | None) -> str | None:
    if query_token:
        return query_token
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


def grant_for(
    secret: str | None, query_token: str | None, authorization: str | None, counter: str
) -> Grant:
    """What a request may do with ``counter``: everything without a secret, else its token's
    claims (``?token=`` first, then ``Authorization: Bearer``); AuthError if nothing."""
    if not secret:
        return OPEN
    return authorize(secret, token_from(query_token, authorization), counter)


def authorize(secret: str, token: str | None, counter: str) -> Grant:
    """Check a token against the secret and return what it allows on ``counter``."""
    if token is None:
        raise AuthError(401, "a token is required (?token=... or Authorization: Bearer ...)")
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=ALGORITHMS)
    except jwt.ExpiredSignatureError:
        raise AuthError(401, "the token has expired") from None
    except jwt.InvalidTokenError:
        raise AuthError(401, "the token is not valid") from None
    incr = _allows(claims.get("incr"), counter)
    grant = Grant(read=incr or _allows(claims.get("read"), counter), incr=incr)
    if not grant.read:
        raise AuthError(403, f"the token does not allow counter {counter}")
    return grant


def _allows(names: object, counter: str) -> bool:
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Iterable):
        return False
    return any(name in (WILDCARD, counter) for name in names)


def issue(secret: str, read: list[str], incr: list[str], expires_at: int | None = None) -> str:
    """Make a token (for operators' tooling and the tests)."""
    claims: dict[str, Any] = {"read": read, "incr": incr}
    if expires_at is not None:
        claims["exp"] = expires_at
    return jwt.encode(claims, secret, algorithm="HS256")
