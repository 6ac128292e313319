"""The first bytes of every connection decide who serves it: websockets or plain HTTP.

websockets' HTTP parser takes only what leads to a WebSocket (it refuses
request bodies, so a POST cannot reach ``process_request``). The connection
class websockets creates for each TCP connection therefore reads the request
head first: a WebSocket upgrade then goes to websockets exactly as if nothing
had looked at it, anything else to ``worker.server.http``, which answers
probes, the page, the client module and the HTTP API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, cast

from websockets.asyncio.server import ServerConnection

from ..core.protocol import ErrorCode
from .http import HttpConnection, closing_response

# The largest request head taken (h11's default limit too); beyond it, 431.
MAX_HEAD_BYTES = 16 * 1024
HEAD_TOO_LARGE = closing_response(
    431, ErrorCode.BAD_REQUEST, "the request head is larger than 16 KiB"
)
_END_OF_HEAD = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """What the front needs of its worker, bound once per server.

    ``start_http`` takes a connection for plain HTTP, or answers and closes it
    (None) when the worker is at its connection limit.
    """

    start_http: Callable[[asyncio.Transport], HttpConnection | None]
    open_timeout: float


class FrontConnection(ServerConnection):
    """A websockets server connection that looks at the request head before websockets does."""

    door: ClassVar[FrontDoor]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._front_transport = cast(asyncio.Transport, transport)
        # Until the head decides: neither websockets (_websocket) nor HTTP (_http).
        self._websocket = False
        self._http: HttpConnection | None = None
        self._head = bytearray()
        # A peer that sends no complete head in time is dropped, as websockets
        # drops a handshake that takes longer than the open timeout.
        self._sniff_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self.door.open_timeout, self._front_transport.abort
        )

    def data_received(self, data: bytes) -> None:
        if self._websocket:
            super().data_received(data)
        elif self._http is not None:
            self._http.data_received(data)
        else:
            self._head += data
            end = self._head.find(_END_OF_HEAD)
            if end > MAX_HEAD_BYTES or (end < 0 and len(self._head) > MAX_HEAD_BYTES):
                self._stop_sniffing()
                self._front_transport.write(HEAD_TOO_LARGE)
                self._front_transport.close()
            elif end >= 0:
                self._choose(is_websocket_upgrade(bytes(self._head[:end])))

    def _choose(self, websocket: bool) -> None:
        head = self._stop_sniffing()
        transport = self._front_transport
        if websocket:
            self._websocket = True
            super().connection_made(transport)
            super().data_received(head)
            return
        # None: refused at the connection limit (answered and closed).
        self._http = self.door.start_http(transport)
        if self._http is not None:
            self._http.data_received(head)

    def _stop_sniffing(self) -> bytes:
        """End the head's timer; the bytes read so far."""
        if self._sniff_timer is not None:
            self._sniff_timer.cancel()
            self._sniff_timer = None
        head, self._head = bytes(self._head), bytearray()
        return head

    def eof_received(self) -> bool | None:  # type: ignore[override]
        # websockets types this None; asyncio lets a protocol return True to keep
        # the transport open, which a half-closed HTTP client needs for its answer.
        if self._websocket:
            super().eof_received()
            return None
        if self._http is not None:
            return self._http.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_sniffing()
        if self._websocket:
            super().connection_lost(exc)
        elif self._http is not None:
            self._http.connection_lost()

    def pause_writing(self) -> None:
        if self._websocket:
            super().pause_writing()
        elif self._http is not None:
            self._http.pause_writing()

    def resume_writing(self) -> None:
        if self._websocket:
            super().resume_writing()
        elif self._http is not None:
            self._http.resume_writing()


def front_connection_class(door: FrontDoor) -> type[ServerConnection]:
    """The connection class for one server: ``FrontConnection`` bound to its worker."""
    return type("WorkerFrontConnection", (FrontConnection,), {"door": door})


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether a request head carries ``Upgrade: websocket`` (any case, any list position)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False
