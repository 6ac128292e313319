"""The client's half of exactly-once: a session id and the key of each increment.

A session numbers its increments 1, 2, 3, ... per counter; the worker applies
each number once and refuses a gap (``out_of_order``). A client that resends
its unacknowledged increments in number order after a reconnect, to any worker,
therefore neither loses nor doubles one (docs/guarantees.md).
"""

from __future__ import annotations

import secrets
from typing import Any

# Refusals after which the same increment may be sent again unchanged: nothing
# was applied, or (unavailable) nothing is known; the session or id makes a
# second application impossible either way.
RESENDABLE = frozenset({"unavailable", "rate_limited", "out_of_order"})


def new_session_id() -> str:
    """96 random bits as 16 URL-safe characters (the protocol asks for 8 to 64)."""
    return secrets.token_urlsafe(12)


def reply_key(message: dict[str, Any]) -> str:
    """Which increment an ack or error answers: its n (session) or its id, as a string."""
    if "n" in message:
        return str(message["n"])
    return str(message.get("id"))
