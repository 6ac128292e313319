"""``ws-counter client URL``: the tutorial's interactive client, on the client library.

It prompts ``Number: ``, adds each number typed to the counter and prints the
acknowledged total and every total pushed by others. Reconnects, resends and
exactly-once are the library's (``ws_counter_client``): a dropped connection
neither loses nor doubles a number.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import threading
from typing import TextIO

from websockets.exceptions import InvalidURI

from ws_counter_client import (
    Ack,
    CertificateRejected,
    ClientClosed,
    CounterClient,
    CounterClientError,
    IncrementRefused,
    Total,
    connect,
    tls_context,
)
from ws_counter_client.rules import check_by

# Seconds the last increments get to be acknowledged after the end of input.
EOF_GRACE = 5.0
# Seconds a pushed total waits for the acks of increments in flight, which say it.
ACK_FIRST = 1.0


def describe_ack(ack: Ack) -> str:
    if ack.total is None:
        return "acknowledged: applied earlier (its total is no longer kept)"
    suffix = " (duplicate of an earlier send)" if ack.duplicate else ""
    return f"acknowledged: total {ack.total} (seq {ack.seq}){suffix}"


def describe_total(total: Total) -> str:
    missed = " - you missed updates" if total.missed else ""
    return f"total {total.total} (seq {total.seq}){missed}"


HELP = (
    "type a whole number and Enter to add it to the counter (negative to subtract);"
    " totals others add are shown as they come; Ctrl-D or Ctrl-C ends"
)


def _hint(exc: CounterClientError) -> str:
    if isinstance(exc, CertificateRejected):
        return "\ngive the CA that signed it with --ca FILE (ws-counter cluster --tls prints it)"
    return ""


def parse_number(line: str) -> int | None:
    """A typed whole number the protocol takes, or None."""
    try:
        return check_by(int(line.strip()))
    except ValueError:
        return None


class InteractiveClient:
    """Numbers typed are taken at once, in order: sent when connected, kept (and said
    so) until the first connection otherwise."""

    def __init__(self, url: str, out: TextIO, ca_file: str | None = None) -> None:
        self.url = url
        self.out = out
        self.ca_file = ca_file
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.counter: CounterClient | None = None
        # Typed before the first connection, in order: never sent yet.
        self.waiting: list[int] = []
        # Each increment sent and not answered, and the number typed for it; one the
        # client closed on stays, for the report.
        self.increments: dict[asyncio.Task[None], int] = {}
        # (epoch, seq) of our own acks: their totals are shown once, as the ack.
        self.acked: set[tuple[str, int]] = set()

    def say(self, text: str) -> None:
        self.out.write(f"\r{text}\nNumber: ")
        self.out.flush()

    async def run(self) -> int:
        try:
            client = connect(
                self.url, on_connection=self._on_connection, ssl=tls_context(self.ca_file)
            )
        except (ValueError, OSError, ssl.SSLError) as exc:
            self.out.write(f"ws-counter client: {exc}\n")
            return 2
        self._read_lines()
        typing = asyncio.create_task(self._take_typed_numbers())
        try:
            async with client as counter:
                self.counter = counter
                for number in self.waiting:
                    self._send(counter, number)
                self.waiting.clear()
                printer = asyncio.create_task(self._print_totals(counter))
                try:
                    await typing
                    await self._settle()
                finally:
                    printer.cancel()
        except InvalidURI as exc:
            self.out.write(f"\ninvalid URL: {exc}\n")
            return 2
        except CounterClientError as exc:
            self.out.write(f"\n{exc}{_hint(exc)}\n")
            self._report_unconfirmed()
            return 1
        except asyncio.CancelledError:
            # Ctrl-C: say what was typed and not confirmed, then stop at once.
            self._report_unconfirmed()
            raise
        finally:
            typing.cancel()
        return 0

    def _report_unconfirmed(self) -> None:
        """What was typed and never acknowledged: sent ones may or may not have been
        applied; ones never sent were not."""
        sent = list(self.increments.values())
        if sent:
            listed = ", ".join(map(str, sent))
            self.out.write(
                f"\rnot confirmed: {listed} (sent; each was applied once or not at all:"
                " the total shows which)\n"
            )
        if self.waiting:
            listed = ", ".join(map(str, self.waiting))
            self.out.write(f"\rnever sent: {listed} (not applied)\n")
        self.out.flush()

    def _on_connection(self, up: bool, detail: str) -> None:
        if not up:
            self.say(f"connection lost ({detail})")

    async def _print_totals(self, counter: CounterClient) -> None:
        async for total in counter.totals():
            # Our own increment's total can come through the fan-out before its ack:
            # while increments are in flight, let their acks speak first (totals are
            # conflated, so a wait shows the newest one, never a backlog).
            if self.increments:
                await asyncio.wait(list(self.increments), timeout=ACK_FIRST)
            if (total.epoch, total.seq) not in self.acked:
                self.say(describe_total(total))

    async def _take_typed_numbers(self) -> None:
        while (line := await self.lines.get()) is not None:
            if not line.strip():
                self.say("")
                continue
            number = parse_number(line)
            if line.strip().lower() in ("help", "?", "h"):
                self.say(HELP)
            elif number is None:
                self.say("not a whole number in the signed 64-bit range; nothing sent")
            elif self.counter is None:
                self.waiting.append(number)
                self.say(f"not connected yet: {number} is sent once connected")
            else:
                if not self.counter.connected:
                    self.say("not connected: it will be sent after reconnecting")
                self._send(self.counter, number)

    async def _settle(self) -> None:
        """At the end of input: unacknowledged increments get a moment, then are named."""
        if self.increments:
            await asyncio.wait(list(self.increments), timeout=EOF_GRACE)
            self._report_unconfirmed()

    def _send(self, counter: CounterClient, number: int) -> None:
        task = asyncio.create_task(self._add(counter, number))
        self.increments[task] = number

    async def _add(self, counter: CounterClient, number: int) -> None:
        answered = True
        try:
            ack = await counter.increment(number)
            if ack.epoch is not None and ack.seq is not None:
                self.acked.add((ack.epoch, ack.seq))
            self.say(describe_ack(ack))
        except IncrementRefused as exc:
            self.say(f"error [{exc.code}]: {exc.message}")
        except ClientClosed:
            answered = False  # the client is ending: the report names it
        except CounterClientError as exc:
            self.say(f"not acknowledged: {exc}")
        if answered:
            self.increments.pop(asyncio.current_task(), None)  # type: ignore[arg-type]

    def _read_lines(self) -> None:
        loop = asyncio.get_running_loop()
        put = self.lines.put_nowait

        def read() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(put, line)
            loop.call_soon_threadsafe(put, None)

        self.out.write("Number: ")
        self.out.flush()
        threading.Thread(target=read, name="stdin", daemon=True).start()


async def run_client(url: str, ca_file: str | None = None) -> int:
    return await InteractiveClient(url, sys.stdout, ca_file).run()
