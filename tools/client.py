"""``ws-counter client URL``: the tutorial's interactive client, done properly.

It prompts ``Number: ``, sends each number as the next increment of its own
session, prints the acknowledged total and every total pushed by others,
reconnects with jittered exponential backoff, and resends unacknowledged
increments, in order and unchanged, after a reconnect or a refusal that
applied nothing, so that a dropped connection neither loses nor doubles a number.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import broadcast
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from worker.core.backoff import backoff_delays, nth_delay
from worker.core.protocol import INT64_MAX, INT64_MIN, incr_message

from .session import RESENDABLE, new_session_id

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 15.0
EOF_GRACE = 5.0


def describe(message: dict[str, Any]) -> str:
    kind = message.get("type")
    if kind == "ack" and "total" not in message:
        return "acknowledged: applied earlier (its total is no longer kept)"
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
        # Unacknowledged increments by their number in this client's session.
        self.session = new_session_id()
        self.next_n = 1
        self.unacked: dict[int, str] = {}
        self.resend_timer: asyncio.TimerHandle | None = None
        self.refusals = 0
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
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while not self.stopping:
            try:
                async with connect(self.url, compression=None, open_timeout=10) as connection:
                    self.connection = connection
                    delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
                    for frame in self.unacked.values():
                        await connection.send(frame)
                    await self._converse(connection)
            except InvalidURI as exc:
                self.out.write(f"invalid URL: {exc}\n")
                return 2
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                if self.stopping:
                    break
                wait = next(delays)
                self.say(f"connection lost ({_reason(exc)}); reconnecting in {wait:.1f}s")
                await self._wait_or_stop(wait)
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
            n = message.get("n")
            if message.get("session") == self.session and n in self.unacked:
                if message.get("type") == "ack":
                    self._settle(n)
                elif message.get("code") in RESENDABLE:
                    self._resend_later(min(n, message.get("expected", n)))
                    continue
                else:
                    self._settle(n)
                    if message.get("code") != "overflow" and n == self.next_n - 1:
                        # Refused before it reached Redis: the number is unused.
                        self.next_n = n
            self.say(describe(message))

    def _settle(self, n: int) -> None:
        del self.unacked[n]
        self.refusals = 0
        if not self.unacked:
            self.all_acked.set()

    def _resend_later(self, start: int) -> None:
        """Resend every unacknowledged number from ``start`` on, in order, after a backoff."""
        if self.resend_timer is not None:
            return
        self.refusals += 1
        delay = nth_delay(BACKOFF_FIRST, BACKOFF_CAP, self.refusals)

        def resend() -> None:
            self.resend_timer = None
            if self.connection is not None:
                for n, frame in self.unacked.items():
                    if n >= start:
                        broadcast([self.connection], frame)

        self.resend_timer = asyncio.get_running_loop().call_later(delay, resend)

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
            frame = incr_message(number, session=self.session, n=self.next_n)
            self.unacked[self.next_n] = frame
            self.next_n += 1
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
