"""Cheap fan-out clients: raw sockets that do the handshake by hand and then only look
for ``"seq":N`` in the text frames they receive.

Each process holds many connections on one ``selectors`` loop, so that the
load generator costs little next to the server it measures. The clock is
CLOCK_MONOTONIC, shared by every process on the machine.
"""

from __future__ import annotations

import base64
import os
import re
import selectors
import socket
import time
from multiprocessing.connection import Connection

from ws_counter.tools.loadtest.coverage import Coverage

SEQ = re.compile(rb'"seq": ?(\d+)')


def open_raw(host: str, port: int, path: str) -> tuple[socket.socket, bytes]:
    """A connection after the handshake, and the bytes that came after the response head."""
    sock = socket.create_connection((host, port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    sock.setblocking(False)
    return sock, head.split(b"\r\n\r\n", 1)[1]


class Frames:
    """Splits one connection's byte stream into frames; keeps the newest seq seen."""

    __slots__ = ("buffer", "count", "seq")

    def __init__(self, leftover: bytes) -> None:
        self.buffer = leftover
        self.seq = 0
        self.count = 0

    def feed(self, data: bytes) -> int:
        """Add bytes; return how many complete frames they finished."""
        self.buffer += data
        buffer, position, frames = self.buffer, 0, 0
        while len(buffer) - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if len(buffer) - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if len(buffer) - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > len(buffer):
                break
            if buffer[position] & 0x0F == 0x1:
                match = SEQ.search(buffer, position + header, end)
                if match:
                    self.seq = max(self.seq, int(match.group(1)))
            frames += 1
            position = end
        self.buffer = buffer[position:]
        self.count += frames
        return frames


class Holder:
    """Many connections on one selector, and when each seq had reached all of them
    (the load test's Coverage: the low-water mark of the connections' seqs)."""

    def __init__(self, opened: list[tuple[socket.socket, bytes]]) -> None:
        self.socks = [sock for sock, _ in opened]
        self.streams = {sock.fileno(): Frames(b"") for sock in self.socks}
        self.coverage = Coverage()
        self.frames = 0
        self.selector = selectors.DefaultSelector()
        now = time.monotonic()
        for sock, leftover in opened:
            self.coverage.join(0, now)
            self.selector.register(sock, selectors.EVENT_READ)
            self._feed(sock, leftover)

    @property
    def low(self) -> int:
        return self.coverage.low or 0

    def _feed(self, sock: socket.socket, data: bytes) -> Frames:
        stream = self.streams[sock.fileno()]
        before = stream.seq
        self.frames += stream.feed(data)
        if stream.seq != before:
            self.coverage.move(before, stream.seq, time.monotonic())
        return stream

    def _receive(self, sock: socket.socket) -> bytes | None:
        """Bytes from a readable socket; None when it had nothing after all."""
        try:
            return sock.recv(1 << 16)
        except BlockingIOError:
            return None

    def wait_for_first_totals(self) -> None:
        """Until every connection has its first total: the server is done setting it up."""
        waiting = sum(1 for stream in self.streams.values() if stream.count == 0)
        while waiting:
            for key, _ in self.selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = self._receive(sock)
                if data == b"":
                    raise ConnectionError("the server closed a connection before its first total")
                had = self.streams[sock.fileno()].count
                if data and had == 0 and self._feed(sock, data).count > 0:
                    waiting -= 1
        self.frames = 0

    def follow(self, pipe: Connection) -> None:
        """Read until told to stop, or until the low-water mark reaches the seq asked for."""
        # The pipe is watched like the sockets: commands wake the loop, no polling.
        self.selector.register(pipe, selectors.EVENT_READ)
        stop_at: int | None = None
        running = True
        while running and (stop_at is None or self.low < stop_at):
            for key, _ in self.selector.select():
                if key.fileobj is pipe:
                    command, *args = pipe.recv()
                    running = command != "stop"
                    stop_at = args[0] if command == "until" else stop_at
                    continue
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = self._receive(sock)
                if data == b"":
                    self.selector.unregister(sock)
                elif data:
                    self._feed(sock, data)


def run_clients(host: str, port: int, path: str, count: int, pipe: Connection) -> None:
    """Hold ``count`` connections; report when all are open, then when each seq reached all."""
    holder = Holder([open_raw(host, port, path) for _ in range(count)])
    holder.wait_for_first_totals()
    pipe.send(("open", count))
    holder.follow(pipe)
    pipe.send(("done", holder.coverage.reached, holder.frames, holder.low))
    for sock in holder.socks:
        sock.close()
