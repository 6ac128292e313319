"""The first bytes of every connection decide who serves it: websockets or plain HTTP.

The connection class that reads them is ``ws_counter.worker.server.wire.FrontConnection``
(it subclasses websockets' internals, which live in that module); this module
holds what it decides with: a WebSocket upgrade goes to websockets, anything
else to ``ws_counter.worker.server.http``, which answers probes, the page, the client
module and the HTTP API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from ..core.protocol import ErrorCode
from .http import HttpConnection, closing_response

# The largest request head taken (h11's default limit too); beyond it, 431.
MAX_HEAD_BYTES = 16 * 1024
HEAD_TOO_LARGE = closing_response(
    431, ErrorCode.BAD_REQUEST, "the request head is larger than 16 KiB"
)


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """What the front needs of its worker, bound once per server.

    ``start_http`` takes a connection for plain HTTP, or answers and closes it
    (None) when the worker is at its connection limit.
    """

    start_http: Callable[[asyncio.Transport], HttpConnection | None]
    open_timeout: float


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether a request head carries ``Upgrade: websocket`` (any case, any list position)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False
