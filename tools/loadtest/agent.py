"""One load-generator process: its share of clients, driven in phases by the parent.

Phases, each started by a message from the parent over a pipe, so that all
processes move together: connect (ramped), ``go`` (send increments), then
``finish`` (wait until every client has seen the final seq, verify, close).

Fan-out is measured with a low-water mark per counter: the lowest seq that
every client of this process has seen. When it passes seq S at time T, T is
when this process's last client got S (or later); the parent takes the
latest T over all processes. Times are time.monotonic(), one clock for all
processes of the machine, so no clock sync is needed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from worker import runtime
from worker.core.backoff import backoff_delays, nth_delay
from worker.core.protocol import incr_message
from worker.limits import raise_open_file_limit
from worker.tasks import TaskSet
from ws_counter_client.client import counter_url, send_in_order
from ws_counter_client.rules import RESENDABLE, Fail, Forgotten, Resend, ResendFrom, Session

from .coverage import Coverage
from .histograms import new_histogram
from .plan import Share

MAX_RECONNECTS = 30
MAX_RESENDS = 30
PROGRESS_SECONDS = 0.5
# Reconnects and resends back off from 50 ms to 2 s.
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0


@dataclass
class Pending:
    by: int
    sent_at: float
    frame: str = ""
    resends: int = 0
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Ids:
    """The lean alternative to a session (``--dedup id``): one id per increment,
    each resent alone; kept to measure what sessions save."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.outstanding: dict[str, Pending] = {}
        self.sequence = 0

    def add(self, pending: Pending) -> None:
        self.sequence += 1
        key = f"{self.prefix}-{self.sequence}"
        pending.frame = incr_message(pending.by, key)
        self.outstanding[key] = pending


class LoadClient:
    def __init__(self, agent: Agent, number: int, counter: str) -> None:
        self.agent = agent
        self.number = number
        self.counter = counter
        self.url = counter_url(agent.share.url, counter)
        self.connection: ClientConnection | None = None
        self.epoch: str | None = None
        self.seq: int | None = None
        self.total: int | None = None
        self.initial: tuple[str, int, int] | None = None
        self.sends = TaskSet()
        # Outstanding increments in the order sent, numbered by the client
        # library's rules (a session), or by id; resends keep that order.
        self.book: Session[Pending] | Ids = (
            Session() if agent.share.dedup == "session" else Ids(f"{agent.run_id}-{number}")
        )
        self.resend_from = ResendFrom()
        self.connected = asyncio.Event()
        self.snapshot = asyncio.Event()
        self.finishing = False
        self.reconnects = 0
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> bool:
        """First connection: measured as a handshake; failures are counted, not retried."""
        started = time.monotonic()
        try:
            connection = await connect(
                self.url, compression=None, open_timeout=15, ping_interval=None, max_size=2**16
            )
        except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as exc:
            self.agent.failed_connects[_handshake_failure(exc)] += 1
            return False
        self.agent.connect_us.record_value(max(1, int((time.monotonic() - started) * 1e6)))
        self.connection = connection
        self.task = asyncio.create_task(self._life(connection))
        return True

    async def _life(self, connection: ClientConnection) -> None:
        while True:
            await self._read(connection)
            if self.finishing or self.reconnects >= MAX_RECONNECTS:
                return
            connection_or_none = await self._reconnect()
            if connection_or_none is None:
                return
            connection = connection_or_none

    async def _read(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.connected.set()
        try:
            async for raw in connection:
                self._on_message(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self.connected.clear()
            self.connection = None
            code = connection.close_code if connection.close_code is not None else 1006
            self.agent.close_codes[code] += 1

    async def _reconnect(self) -> ClientConnection | None:
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while self.reconnects < MAX_RECONNECTS and not self.finishing:
            self.reconnects += 1
            await asyncio.sleep(next(delays))
            try:
                connection = await connect(
                    self.url, compression=None, open_timeout=15, ping_interval=None
                )
            except (OSError, TimeoutError, InvalidStatus, ConnectionClosed):
                continue
            self.agent.reconnects += 1
            # Unacknowledged increments go again, in order, unchanged: the server
            # applies each session number (or id) at most once and answers a
            # retry with the original ack.
            for frame in self.frames():
                await connection.send(frame)
            return connection
        return None

    def _on_message(self, message: dict[str, Any]) -> None:
        agent = self.agent
        agent.frames += 1
        kind = message.get("type")
        now = time.monotonic()
        if kind == "total":
            self._on_total(message["epoch"], message["seq"], message["total"], now)
        elif kind == "ack":
            pending = self._settle(message)
            if pending is None:
                return
            if "seq" not in message:
                # A resend older than the session's window: applied once, but
                # with no seq this run cannot prove where.
                agent.errors.append(f"{self.counter}: an ack without a total: {message}")
            agent.ack_us.record_value(max(1, int((now - pending.sent_at) * 1e6)))
            agent.record_ack(self.counter, message, pending, now)
            if not pending.done.done():
                pending.done.set_result(None)
        elif kind == "error":
            self._on_error(message)

    @property
    def outstanding(self) -> int:
        return len(self.book.outstanding)

    def pending_futures(self) -> list[asyncio.Future[None]]:
        if isinstance(self.book, Session):
            return [item.ticket.done for item in self.book.outstanding.values()]
        return [pending.done for pending in self.book.outstanding.values()]

    def frames(self, start: int = 1) -> list[str]:
        if isinstance(self.book, Session):
            return self.book.frames(start)
        return [pending.frame for pending in self.book.outstanding.values()]

    def _settle(self, message: dict[str, Any]) -> Pending | None:
        if isinstance(self.book, Session):
            item = self.book.settle(message.get("session"), message.get("n"))
            return None if item is None else item.ticket
        return self.book.outstanding.pop(str(message.get("id")), None)

    def _on_total(self, epoch: str, seq: int, total: int, now: float) -> None:
        coverage = self.agent.coverage[self.counter]
        if self.epoch is None:
            self.initial = (epoch, seq, total)
            self.snapshot.set()
            self.epoch, self.seq, self.total = epoch, seq, total
            coverage.join(seq, now)
            return
        assert self.seq is not None
        if epoch != self.epoch:
            # Redis rewrote the counter's history. Whether anything acknowledged
            # was lost is for the final check of the totals to say.
            self.agent.epoch_changes += 1
            coverage.move(self.seq, seq, now)
            self.epoch = epoch
            self.seq, self.total = seq, total
            return
        if seq < self.seq:
            self.agent.regressions += 1
            return
        coverage.move(self.seq, seq, now)
        self.seq, self.total = seq, total

    def _on_error(self, message: dict[str, Any]) -> None:
        code = str(message.get("code"))
        self.agent.error_codes[code] += 1
        if isinstance(self.book, Ids):
            self._on_id_error(self.book, message, code)
            return
        decision = self.book.refused(
            message.get("session"), message.get("n"), code, message.get("expected")
        )
        if isinstance(decision, Resend) and decision.attempt > MAX_RESENDS:
            item = self.book.outstanding.pop(decision.start, None)
            decision = None if item is None else Fail(item)
        if isinstance(decision, Fail):
            self._failed(decision.item.ticket, f"n={message.get('n')}", code, message)
        elif isinstance(decision, Resend):
            self._resend_session_from(decision.start, decision.attempt)
        elif isinstance(decision, Forgotten):
            for item in decision.items:
                self._failed(item.ticket, "of a forgotten session", code, message)

    def _on_id_error(self, book: Ids, message: dict[str, Any], code: str) -> None:
        key = str(message.get("id"))
        pending = book.outstanding.get(key)
        if pending is None:
            return
        if code in RESENDABLE and pending.resends < MAX_RESENDS:
            pending.resends += 1
            delay = nth_delay(BACKOFF_FIRST, BACKOFF_CAP, pending.resends)
            loop = asyncio.get_running_loop()
            loop.call_later(delay, self._send_in_order_soon, [pending.frame])
            return
        del book.outstanding[key]
        self._failed(pending, key, code, message)

    def _failed(self, pending: Pending, key: str, code: str, message: dict[str, Any]) -> None:
        self.agent.errors.append(f"increment {key} failed: {code}: {message.get('message')}")
        if not pending.done.done():
            pending.done.set_result(None)

    def _resend_session_from(self, n: int, attempt: int) -> None:
        """Resend every outstanding number from the lowest refused, once per burst."""
        if self.resend_from.ask(n):
            delay = nth_delay(BACKOFF_FIRST, BACKOFF_CAP, attempt)
            asyncio.get_running_loop().call_later(delay, self._resend_from_scheduled)

    def _resend_from_scheduled(self) -> None:
        self._send_in_order_soon(self.frames(self.resend_from.take()))

    def _send_in_order_soon(self, frames: list[str]) -> None:
        # Reconnects resend on their own; this covers refusals on a connection
        # that stayed open.
        connection = self.connection
        if connection is not None and frames:
            self.sends.spawn(send_in_order(connection, frames))

    def _send_soon(self, connection: ClientConnection, frame: str) -> None:
        self.sends.spawn(self._send(connection, frame))

    async def _send(self, connection: ClientConnection, frame: str) -> None:
        # A send on a closed connection is not lost: the reconnect resends
        # every pending increment under its id.
        with contextlib.suppress(ConnectionClosed):
            await connection.send(frame)

    def start_increment(self, by: int) -> Pending:
        pending = Pending(by, time.monotonic())
        if isinstance(self.book, Session):
            _, item = self.book.add(by, pending)
            pending.frame = item.frame
        else:
            self.book.add(pending)
        self.agent.sent += 1
        if self.connection is not None:
            self._send_soon(self.connection, pending.frame)
        return pending

    async def close(self) -> None:
        self.finishing = True
        if self.connection is not None:
            await self.connection.close()
        if self.task is not None:
            await self.task


def _handshake_failure(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


class Agent:
    def __init__(self, share: Share, run_id: str, inbox: Connection, outbox: Connection) -> None:
        self.share = share
        self.run_id = run_id
        # Two one-way pipes: the event loop makes the inbox non-blocking to
        # watch it, while the outbox must stay blocking so that a large result
        # is written whole.
        self.inbox_pipe = inbox
        self.outbox = outbox
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.clients = [LoadClient(self, number, counter) for number, counter in share.clients]
        self.coverage: dict[str, Coverage] = {counter: Coverage() for _, counter in share.clients}
        self.connect_us = new_histogram()
        self.ack_us = new_histogram()
        self.failed_connects: collections.Counter[str] = collections.Counter()
        self.close_codes: collections.Counter[int] = collections.Counter()
        self.error_codes: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.acks: dict[str, dict[int, tuple[int, float]]] = collections.defaultdict(dict)
        self.duplicates = 0
        self.regressions = 0
        self.epoch_changes = 0
        self.reconnects = 0
        self.frames = 0
        self.sent = 0
        self.acked = 0
        self.connected = 0
        self.first_send: float | None = None
        self.last_ack: float | None = None
        self.random = random.Random(share.index)

    def record_ack(
        self, counter: str, message: dict[str, Any], pending: Pending, now: float
    ) -> None:
        """Keep each acknowledged seq with its ``by`` and when it was first sent.

        Fan-out latency runs from that send, as a person sees it, until every
        client holds the seq or a later one.
        """
        self.acked += 1
        self.last_ack = now
        seq = message["seq"]
        if message.get("duplicate"):
            self.duplicates += 1
        previous = self.acks[counter].get(seq)
        if previous is not None and previous[0] != pending.by:
            self.errors.append(f"seq {seq} of {counter} acknowledged for two different increments")
        self.acks[counter].setdefault(seq, (pending.by, pending.sent_at))

    def send(self, *message: Any) -> None:
        self.outbox.send(message)

    async def next_message(self, kind: str) -> tuple[Any, ...]:
        while True:
            message = await self.inbox.get()
            if message[0] == kind:
                return tuple(message)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        inbox = self.inbox_pipe
        loop.add_reader(inbox.fileno(), lambda: self.inbox.put_nowait(inbox.recv()))
        reporter = asyncio.create_task(self._report_progress())
        try:
            await self._connect_all()
            self.send("connected", self.connected, sum(self.failed_connects.values()))
            await self.next_message("go")
            await self._drive()
            self.send("sent", {c: max(a, default=0) for c, a in self.acks.items()})
            _, targets = await self.next_message("finish")
            await self._converge(targets)
            verified = await self._verify()
            for client in self.clients:
                await client.close()
        finally:
            reporter.cancel()
        self.send("result", self._result(verified))

    async def _report_progress(self) -> None:
        while True:
            self.send("progress", self.counts())
            await asyncio.sleep(PROGRESS_SECONDS)

    def counts(self) -> dict[str, int]:
        return {
            "connected": self.connected,
            "failed": sum(self.failed_connects.values()),
            "sent": self.sent,
            "acked": self.acked,
            "frames": self.frames,
            "reconnects": self.reconnects,
        }

    async def _connect_all(self) -> None:
        started = time.monotonic()
        interval = 1.0 / self.share.ramp
        handshakes = asyncio.Semaphore(256)

        async def open_one(client: LoadClient) -> None:
            async with handshakes:
                if not await client.open():
                    return
            self.connected += 1
            # Every open client has its snapshot before the first increment goes out.
            try:
                async with asyncio.timeout(15):
                    await client.snapshot.wait()
            except TimeoutError:
                self.errors.append(f"client {client.number} got no initial total")

        tasks = []
        for position, client in enumerate(self.clients):
            delay = started + position * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(open_one(client)))
        await asyncio.gather(*tasks)

    async def _drive(self) -> None:
        self.first_send = time.monotonic()
        live = [client for client in self.clients if client.task is not None]
        deadline = self.first_send + self.share.max_run_seconds
        if self.share.increments is not None:
            await _bounded(
                asyncio.gather(*(self._increments(c, self.share.increments) for c in live)),
                deadline,
            )
        else:
            await self._at_rate(live, deadline)
        pending = [future for c in live for future in c.pending_futures()]
        if pending:
            await _bounded(asyncio.gather(*pending), min(deadline, time.monotonic() + 30))
        unacked = sum(c.outstanding for c in live)
        if unacked:
            self.errors.append(f"{unacked} increments were never acknowledged")

    async def _increments(self, client: LoadClient, count: int) -> None:
        for _ in range(count):
            pending = client.start_increment(self.random.randint(1, 9))
            await pending.done

    async def _at_rate(self, clients: list[LoadClient], deadline: float) -> None:
        if not clients:
            return
        assert self.share.rate is not None and self.share.duration is not None
        started = time.monotonic()
        end = min(deadline, started + self.share.duration)
        sent = 0
        while (now := time.monotonic()) < end:
            due = int((now - started) * self.share.rate)
            for _ in range(due - sent):
                clients[sent % len(clients)].start_increment(self.random.randint(1, 9))
                sent += 1
            await asyncio.sleep(min(0.005, max(0.0, end - now)))

    async def _converge(self, targets: dict[str, int]) -> None:
        waits = []
        for counter, coverage in self.coverage.items():
            coverage.expect(targets.get(counter, 0))
            waits.append(coverage.at_target.wait())
        try:
            async with asyncio.timeout(self.share.converge_timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            behind = sum(
                1
                for client in self.clients
                if client.seq is not None and client.seq < targets.get(client.counter, 0)
            )
            self.errors.append(
                f"{behind} clients had not seen the final seq {self.share.converge_timeout:g}s "
                "after the last ack"
            )

    async def _verify(self) -> dict[str, tuple[str, int, int]]:
        """Read each counter's state on a fresh connection."""
        verified = {}
        for counter in self.coverage:
            try:
                async with connect(
                    counter_url(self.share.url, counter), compression=None, open_timeout=15
                ) as connection:
                    message = json.loads(await asyncio.wait_for(connection.recv(), 15))
                verified[counter] = (message["epoch"], message["seq"], message["total"])
            except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as exc:
                self.errors.append(f"could not read the final total of {counter}: {exc}")
        return verified

    def _result(self, verified: dict[str, tuple[str, int, int]]) -> dict[str, Any]:
        return {
            "index": self.share.index,
            "connect_us": self.connect_us.encode(),
            "ack_us": self.ack_us.encode(),
            "failed_connects": dict(self.failed_connects),
            "close_codes": dict(self.close_codes),
            "error_codes": dict(self.error_codes),
            "errors": self.errors,
            "acks": {counter: dict(acks) for counter, acks in self.acks.items()},
            "reached": {counter: cov.reached for counter, cov in self.coverage.items()},
            "initial": {
                client.counter: client.initial for client in self.clients if client.initial
            },
            "initial_states": sorted(
                {(client.counter, *client.initial) for client in self.clients if client.initial}
            ),
            "final": [
                (client.counter, client.epoch, client.seq, client.total)
                for client in self.clients
                if client.initial
            ],
            "verified": verified,
            "regressions": self.regressions,
            "epoch_changes": self.epoch_changes,
            "duplicates": self.duplicates,
            "reconnects": self.reconnects,
            "frames": self.frames,
            "sent": self.sent,
            "acked": self.acked,
            "connected": self.connected,
            "first_send": self.first_send,
            "last_ack": self.last_ack,
        }


async def _bounded(awaitable: Any, deadline: float) -> None:
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await awaitable
    except TimeoutError:
        pass


def agent_main(share: Share, run_id: str, inbox: Connection, outbox: Connection) -> None:
    """Entry point of a load-generator process."""
    warning = raise_open_file_limit(len(share.clients))
    if warning is not None:
        outbox.send(("fatal", warning + " or spread clients with --processes"))
        return

    async def main() -> int:
        await Agent(share, run_id, inbox, outbox).run()
        return 0

    runtime.run(main())
