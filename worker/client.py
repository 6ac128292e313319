"""``ws-counter client URL``: the tutorial's interactive client, done properly.

It prompts ``Number: ``, sends each number with an id, prints the acknowledged
total and every total pushed by others, reconnects with jittered exponential
backoff, and resends unacknowledged increments with their original ids after a
reconnect, so that a dropped connection neither loses nor doubles a number.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import broadcast
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .protocol import INT64_MAX, INT64_MIN

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 15.0
EOF_GRACE = 5.0


def describe(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "ack":
        suffix = " (duplicate of an earlier send)" if message.get("duplicate") else ""
        return f"acknowledged: total {message['total']} (seq {message['seq']}){suffix}"
    if kind == "total":
        missed = " - you missed updates" if message.get("missed") else ""
        return f"total {message['total']} (seq {message['seq']}){missed}"
    if kind == "error":
        return f"error [{message.get('code')}]: {message.get('message')}"
    return json.dumps(message)


def parse_number(line: str) -> int | None:
    try:
        value = int(line.strip())
    except ValueError:
        return None
    return value if INT64_MIN <= value <= INT64_MAX else None


class InteractiveClient:
    def __init__(self, url: str, out: TextIO) -> None:
        self.url = url
        self.out = out
        self.unacked: dict[str, str] = {}
        self.connection: ClientConnection | None = None
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.all_acked = asyncio.Event()
        self.all_acked.set()
        self.stopping = False

    def say(self, text: str) -> None:
        self.out.write(f"\r{text}\nNumber: ")
        self.out.flush()

    async def run(self) -> int:
        reader = asyncio.create_task(self._read_lines())
        try:
            return await self._stay_connected()
        finally:
            reader.cancel()

    async def _stay_connected(self) -> int:
        delay = BACKOFF_FIRST
        while not self.stopping:
            try:
                async with connect(self.url, compression=None, open_timeout=10) as connection:
                    self.connection = connection
                    delay = BACKOFF_FIRST
                    for frame in self.unacked.values():
                        await connection.send(frame)
                    await self._converse(connection)
            except InvalidURI as exc:
                self.out.write(f"invalid URL: {exc}\n")
                return 2
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                if self.stopping:
                    break
                wait = random.uniform(delay / 2, delay)
                self.say(f"connection lost ({_reason(exc)}); reconnecting in {wait:.1f}s")
                await self._wait_or_stop(wait)
                delay = min(BACKOFF_CAP, delay * 2)
            finally:
                self.connection = None
        return 0

    async def _wait_or_stop(self, seconds: float) -> None:
        """Back off, but wake at once if the user quits."""
        stop = asyncio.create_task(self._until_stopping())
        try:
            await asyncio.wait({stop}, timeout=seconds)
        finally:
            stop.cancel()

    async def _until_stopping(self) -> None:
        while not self.stopping:
            line = await self.lines.get()
            self._handle_line(line)

    async def _converse(self, connection: ClientConnection) -> None:
        incoming = asyncio.create_task(self._receive(connection))
        outgoing = asyncio.create_task(self._until_stopping())
        try:
            done, _ = await asyncio.wait({incoming, outgoing}, return_when=asyncio.FIRST_COMPLETED)
            if outgoing in done:
                # Ctrl-D: give the last increments a moment to be acknowledged.
                async with asyncio.timeout(EOF_GRACE):
                    await self.all_acked.wait()
                await connection.close()
            else:
                incoming.result()
        finally:
            incoming.cancel()
            outgoing.cancel()

    async def _receive(self, connection: ClientConnection) -> None:
        async for raw in connection:
            message = json.loads(raw)
            if message.get("type") in ("ack", "error") and message.get("id") in self.unacked:
                del self.unacked[message["id"]]
                if not self.unacked:
                    self.all_acked.set()
            self.say(describe(message))

    def _handle_line(self, line: str | None) -> None:
        if line is None:
            self.stopping = True
            return
        if not line.strip():
            self.say("")
            return
        number = parse_number(line)
        if number is None:
            frame = line.strip()
        else:
            increment_id = uuid.uuid4().hex
            frame = json.dumps({"op": "incr", "by": number, "id": increment_id})
            self.unacked[increment_id] = frame
            self.all_acked.clear()
        if self.connection is not None:
            broadcast([self.connection], frame)
        elif number is not None:
            self.say("not connected: it will be sent after reconnecting")

    async def _read_lines(self) -> None:
        loop = asyncio.get_running_loop()
        put: Callable[[str | None], None] = self.lines.put_nowait

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(put, line)
            loop.call_soon_threadsafe(put, None)

        self.out.write("Number: ")
        self.out.flush()
        threading.Thread(target=read, name="stdin", daemon=True).start()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed) and exc.rcvd is not None:
        return f"closed with {exc.rcvd.code} {exc.rcvd.reason}".strip()
    return str(exc) or type(exc).__name__


async def run_client(url: str) -> int:
    return await InteractiveClient(url, sys.stdout).run()
