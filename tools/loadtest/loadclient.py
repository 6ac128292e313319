"""One load-test client: the client library's core, plus timing and coverage measurement.

Every protocol decision (numbering, resends, backoff, which totals are news)
is ``ws_counter_client.core``'s, as in the library; this adapter only moves
frames and time, and counts into the process's ``Tally``: each ack's latency
from its first send, and how far this client has seen each counter (the
coverage low-water mark that fan-out latency is measured with).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_counter_client import core
from ws_counter_client.client import MAX_FRAME_BYTES, Outbox
from ws_counter_client.results import Ack, ClientClosed, CounterClientError, Total
from ws_counter_client.rules import Ids, Session
from ws_counter_client.urls import counter_url

from .tally import Tally

# Reconnects and resends back off from 50 ms to 2 s, at most 30 times each; no
# bound on increments in flight, so a client at a set rate never waits for room.
LOAD_POLICY = core.Policy(
    backoff=(0.05, 2.0), max_in_flight=None, max_resends=30, max_reconnects=30
)
OPEN_TIMEOUT = 15


@dataclass(slots=True)
class Pending:
    """One increment of the run: when it was first sent and when it was answered."""

    by: int
    sent_at: float
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class LoadClient:
    """One connection to one counter, reconnected by the core's rules until the run ends."""

    def __init__(
        self,
        tally: Tally,
        url: str,
        counter: str,
        dedup: str,
        ids_prefix: str,
        policy: core.Policy = LOAD_POLICY,
        *,
        tls: dict[str, Any] | None = None,
    ) -> None:
        self.tally = tally
        self.counter = counter
        self.url = counter_url(url, counter)
        self.tls = tls or {}
        book = Session[Pending]() if dedup == "session" else Ids[Pending](prefix=ids_prefix)
        self.core: core.ClientCore[Pending] = core.ClientCore(counter, book, policy)
        self.outbox: Outbox | None = None
        self.seen: Total | None = None
        self.initial: Total | None = None
        self.snapshot = asyncio.Event()
        self.reconnect_after: float | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def outstanding(self) -> int:
        return len(self.core.tickets())

    def pending(self) -> list[asyncio.Future[None]]:
        return [pending.done for pending in self.core.tickets()]

    async def open(self) -> bool:
        """First connection: measured as a handshake; failures are counted, not retried."""
        started = time.monotonic()
        try:
            connection = await self._connect()
        except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as exc:
            self.tally.failed_connects[_handshake_failure(exc)] += 1
            return False
        self.tally.connect_us.record_value(max(1, int((time.monotonic() - started) * 1e6)))
        self.tally.connected_at.append(time.time())
        self.task = asyncio.create_task(self._life(connection))
        return True

    def start_increment(self, by: int) -> Pending:
        pending = Pending(by, time.monotonic())
        self.tally.sent += 1
        self.apply(self.core.handle(core.IncrementAsked(by, pending)))
        return pending

    def receive(self, text: str) -> None:
        self.tally.frames += 1
        self.apply(self.core.handle(core.Received(text)))

    async def close(self) -> None:
        self.apply(self.core.handle(core.CloseAsked()))
        if self.outbox is not None:
            await self.outbox.connection.close()
        elif self.task is not None:
            self.task.cancel()  # waiting to reconnect: nothing to close
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    async def _connect(self) -> ClientConnection:
        url = counter_url(self.url, since=self.core.since)
        return await connect(
            url,
            compression=None,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
            max_size=MAX_FRAME_BYTES,
            **self.tls,
        )

    async def _life(self, connection: ClientConnection) -> None:
        lost = await self._converse(connection)
        while True:
            self.apply(self.core.handle(lost))
            if self.core.stopped or self.reconnect_after is None:
                return
            await asyncio.sleep(self.reconnect_after)
            if self.core.stopped:
                return
            lost = await self._reconnect()

    async def _reconnect(self) -> core.Lost:
        try:
            connection = await self._connect()
        except InvalidStatus as exc:
            status = exc.response.status_code
            return core.Lost(f"HTTP {status}", status, exc.response.body.decode(errors="replace"))
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            return core.Lost(_handshake_failure(exc))
        self.tally.reconnects += 1
        self.tally.reconnected_at.append(time.time())
        return await self._converse(connection)

    async def _converse(self, connection: ClientConnection) -> core.Lost:
        self.outbox = Outbox(connection)
        self.apply(self.core.handle(core.Connected()))
        try:
            async for frame in connection:
                self.receive(frame if isinstance(frame, str) else frame.decode(errors="replace"))
        except ConnectionClosed:
            pass
        finally:
            self.outbox = None
        code = connection.close_code if connection.close_code is not None else 1006
        self.tally.close_codes[code] += 1
        return core.Lost(f"closed with {code}")

    def apply(self, actions: list[core.Action]) -> None:
        now = time.monotonic()
        for action in actions:
            match action:
                case core.Send(frames):
                    if self.outbox is not None:
                        self.outbox.push(frames)
                case core.Resolve(pending, ack):
                    self._acknowledged(pending, ack, now)
                case core.Reject(pending, error):
                    self._failed(pending, error)
                case core.Show(total):
                    self._show(total, now)
                case core.Regress():
                    self.tally.regressions += 1
                case core.Note(code):
                    self.tally.error_codes[code] += 1
                case core.Arm(timer, delay):
                    asyncio.get_running_loop().call_later(delay, self._fire, timer)
                case core.Reconnect(delay):
                    self.reconnect_after = delay
                case core.Stop(error) if error is not None:
                    self.tally.errors.append(f"client of {self.counter} gave up: {error}")

    def _fire(self, timer: core.Timer) -> None:
        self.apply(self.core.handle(core.TimerFired(timer)))

    def _acknowledged(self, pending: Pending, ack: Ack, now: float) -> None:
        self.tally.ack_us.record_value(max(1, int((now - pending.sent_at) * 1e6)))
        self.tally.record_ack(self.counter, ack, pending.by, pending.sent_at, now)
        if not pending.done.done():
            pending.done.set_result(None)

    def _failed(self, pending: Pending, error: CounterClientError) -> None:
        # Closing at the end of the run is no failure: the run reports what
        # was never acknowledged on its own.
        if not isinstance(error, ClientClosed):
            self.tally.errors.append(f"an increment of {self.counter} failed: {error}")
        if not pending.done.done():
            pending.done.set_result(None)

    def _show(self, total: Total, now: float) -> None:
        coverage = self.tally.coverage[self.counter]
        if self.seen is None:
            self.initial = total
            self.snapshot.set()
            coverage.join(total.seq, now)
        else:
            # A new epoch: Redis rewrote the counter's history. Whether anything
            # acknowledged was lost is for the final check of the totals to say.
            self.tally.epoch_changes += total.epoch != self.seen.epoch
            coverage.move(self.seen.seq, total.seq, now)
        self.seen = total


async def send_at_rate(
    clients: Sequence[LoadClient], rate: float, seconds: float, amount: Callable[[], int]
) -> int:
    """Start increments of ``amount()`` at ``rate`` per second for ``seconds``, round-robin
    over ``clients``, without waiting for answers; how many were started."""
    started = time.monotonic()
    end = started + seconds
    sent = 0
    while clients and (now := time.monotonic()) < end:
        due = int((now - started) * rate)
        for _ in range(due - sent):
            clients[sent % len(clients)].start_increment(amount())
            sent += 1
        # The schedule is a clock's: a 5 ms tick keeps each burst small.
        await asyncio.sleep(min(0.005, max(0.0, end - now)))
    return sent


def _handshake_failure(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message}): give its CA with --ca"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__
