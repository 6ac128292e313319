"""Every use the worker makes of websockets' and the event loop's internals.

websockets' documented API sends a message and awaits it. The fan-out needs
more: one prebuilt frame written to thousands of connections without a task
or an await each, whether a connection's transport is above its high-water
mark, and a look at the request head before websockets parses it. Whatever
reaches past the documented API lives in this module and nowhere else, and
``tests/test_wire.py`` pins each use against the installed websockets and
event loop, so an upgrade that moves one of them fails that test, not the
fan-out in production. The uses (websockets 17):

* ``Connection.transport``: the asyncio transport; ``write`` is the one place
  a frame the worker built reaches it;
* ``Connection.paused``: True between the transport's ``pause_writing`` and
  ``resume_writing``, which ``Connection.drain()`` waits for;
* ``Connection.protocol``: the sans-I/O protocol, for its ``state`` and its
  negotiated ``extensions``;
* ``ServerConnection`` as the ``asyncio.Protocol`` of each TCP connection:
  ``FrontConnection`` overrides its callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import ClassVar, cast

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from .front import HEAD_TOO_LARGE, MAX_HEAD_BYTES, FrontDoor, is_websocket_upgrade
from .http import HttpConnection

_OPEN = State.OPEN
_END_OF_HEAD = b"\r\n\r\n"


def text_frame(text: str) -> bytes:
    """A server's text frame: no mask, no extension, so the same bytes for every client."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def write(connection: ServerConnection, frame: bytes) -> None:
    """The one place a frame the worker built reaches a transport."""
    connection.transport.write(frame)


def write_text(connection: ServerConnection, text: str) -> None:
    """A message for a connection with extensions: websockets builds (and compresses) its frame."""
    broadcast([connection], text)


def is_open(connection: ServerConnection) -> bool:
    return connection.protocol.state is _OPEN


def is_paused(connection: ServerConnection) -> bool:
    """Whether the transport's buffer is above its high-water mark."""
    return connection.paused


async def drain(connection: ServerConnection) -> None:
    """Wait until the transport's buffer is below its low-water mark."""
    await connection.drain()


def has_extensions(connection: ServerConnection) -> bool:
    """Whether an extension (permessage-deflate) was negotiated: then frames differ per client."""
    return bool(connection.protocol.extensions)


def abort(connection: ServerConnection) -> None:
    """Drop the TCP connection now, without a close frame."""
    connection.transport.abort()


def limit_send_buffer(connection: ServerConnection, size: int) -> None:
    """Fix the kernel send buffer of a connection at ``size`` bytes.

    Left alone, Linux grows a socket's send buffer up to tcp_wmem's maximum
    (4 MiB by default) for a peer that does not read: kernel memory no
    conflation can reclaim. A fixed size makes such a peer show up as a
    paused transport within a few KiB, after which it gets only the newest total.
    """
    sock = connection.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class FrontConnection(ServerConnection):
    """A websockets server connection that looks at the request head before websockets does.

    websockets' HTTP parser takes only what leads to a WebSocket (it refuses
    request bodies, so a POST cannot reach ``process_request``). This class,
    which websockets creates for each TCP connection, therefore reads the
    request head first: a WebSocket upgrade then goes to websockets exactly as
    if nothing had looked at it, anything else to ``ws_counter.worker.server.http``.
    """

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
