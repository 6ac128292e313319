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
import contextlib
import json
import random
import signal
import time
from collections.abc import Awaitable
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ws_counter.worker import runtime
from ws_counter.worker.core.state import CounterState
from ws_counter.worker.limits import raise_open_file_limit
from ws_counter_client.urls import counter_url, tls_context, tls_options

from .loadclient import LoadClient, send_at_rate
from .plan import Share
from .tally import AgentResult, Tally

PROGRESS_SECONDS = 0.5
# Handshakes under way at once while the clients connect.
HANDSHAKES_AT_ONCE = 256


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
        self.tally = Tally(sorted({counter for _, counter in share.clients}))
        # One TLS context for the process's clients (loading a CA file is not free).
        self.tls = tls_options(share.url, tls_context(share.ca_file))
        self.clients = [
            LoadClient(
                self.tally, share.url, counter, share.dedup, f"{run_id}-{number}", tls=self.tls
            )
            for number, counter in share.clients
        ]
        self.random = random.Random(share.index)
        self.cpu_busy = 0.0

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
            tally = self.tally
            self.send("connected", tally.connected, dict(tally.failed_connects))
            await self.next_message("go")
            cpu, wall = time.process_time(), time.monotonic()
            await self._drive()
            self.cpu_busy = (time.process_time() - cpu) / max(time.monotonic() - wall, 1e-6)
            self.send("sent", {c: max(a, default=0) for c, a in tally.acks.items()})
            _, targets = await self.next_message("finish")
            await self._converge(targets)
            verified = await self._verify(targets)
            for client in self.clients:
                await client.close()
        finally:
            reporter.cancel()
        self.send("result", self._result(verified))

    async def _report_progress(self) -> None:
        while True:
            self.send("progress", self.tally.counts())
            await asyncio.sleep(PROGRESS_SECONDS)

    async def _connect_all(self) -> None:
        started = time.monotonic()
        interval = 1.0 / self.share.ramp
        handshakes = asyncio.Semaphore(HANDSHAKES_AT_ONCE)

        async def open_one(client: LoadClient) -> None:
            async with handshakes:
                if not await client.open():
                    return
            self.tally.connected += 1
            # Every open client has its snapshot before the first increment goes out.
            try:
                async with asyncio.timeout(15):
                    await client.snapshot.wait()
            except TimeoutError:
                self.tally.errors.append(f"a client of {client.counter} got no initial total")

        tasks = []
        for position, client in enumerate(self.clients):
            delay = started + position * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(open_one(client)))
        await asyncio.gather(*tasks)

    async def _drive(self) -> None:
        self.tally.first_send = time.monotonic()
        live = [client for client in self.clients if client.task is not None]
        deadline = self.tally.first_send + self.share.max_run_seconds
        if self.share.increments is not None:
            await _bounded(
                asyncio.gather(*(self._increments(c, self.share.increments) for c in live)),
                deadline,
            )
        else:
            await self._at_rate(live, deadline)
        pending = [future for c in live for future in c.pending()]
        if pending:
            await _bounded(asyncio.gather(*pending), min(deadline, time.monotonic() + 30))
        unacked = sum(c.outstanding for c in live)
        if unacked:
            self.tally.errors.append(f"{unacked} increments were never acknowledged")

    async def _increments(self, client: LoadClient, count: int) -> None:
        for _ in range(count):
            pending = client.start_increment(self.random.randint(1, 9))
            await pending.done

    async def _at_rate(self, clients: list[LoadClient], deadline: float) -> None:
        assert self.share.rate is not None and self.share.duration is not None
        seconds = min(deadline - time.monotonic(), self.share.duration)
        await send_at_rate(clients, self.share.rate, seconds, lambda: self.random.randint(1, 9))

    async def _converge(self, targets: dict[str, int]) -> None:
        waits = []
        for counter, coverage in self.tally.coverage.items():
            coverage.expect(targets.get(counter, 0))
            waits.append(coverage.at_target.wait())
        try:
            async with asyncio.timeout(self.share.converge_timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            behind = sum(
                1
                for client in self.clients
                if client.seen is not None and client.seen.seq < targets.get(client.counter, 0)
            )
            self.tally.errors.append(
                f"{behind} clients had not seen the final seq {self.share.converge_timeout:g}s "
                "after the last ack"
            )

    async def _verify(self, targets: dict[str, int]) -> dict[str, CounterState]:
        """Read each counter's state on a fresh connection: its snapshot, then what follows
        until it holds the newest acknowledged seq. A state may reach the workers up to
        1/WS_PUBLISH_RATE s after its ack, so a snapshot taken at once can be that much
        behind; a counter whose history was lost never gets there and is judged as read."""
        verified = {}
        for counter in self.tally.coverage:
            try:
                async with connect(
                    counter_url(self.share.url, counter),
                    compression=None,
                    open_timeout=15,
                    **self.tls,
                ) as connection:
                    state = await _newest_state(connection, targets.get(counter, 0))
                verified[counter] = state
            except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as exc:
                self.tally.errors.append(f"could not read the final total of {counter}: {exc}")
        return verified

    def _result(self, verified: dict[str, CounterState]) -> AgentResult:
        tally = self.tally
        seen = [(c.counter, c.initial, c.seen) for c in self.clients if c.initial and c.seen]
        return AgentResult(
            index=self.share.index,
            connect_us=tally.connect_us.encode(),
            ack_us=tally.ack_us.encode(),
            failed_connects=dict(tally.failed_connects),
            close_codes=dict(tally.close_codes),
            error_codes=dict(tally.error_codes),
            errors=tally.errors,
            acks={counter: dict(acks) for counter, acks in tally.acks.items()},
            earlier=dict(tally.earlier),
            reached={counter: cov.reached for counter, cov in tally.coverage.items()},
            initial_states=sorted(
                {(c, i.state) for c, i, _ in seen}, key=lambda item: (item[0], item[1].seq)
            ),
            final=[(c, s.state) for c, _, s in seen],
            verified=verified,
            regressions=tally.regressions,
            epoch_changes=tally.epoch_changes,
            duplicates=tally.duplicates,
            reconnects=tally.reconnects,
            connected_at=tally.connected_at,
            reconnected_at=tally.reconnected_at,
            frames=tally.frames,
            sent=tally.sent,
            acked=tally.acked,
            connected=tally.connected,
            first_send=tally.first_send,
            last_ack=tally.last_ack,
            cpu_busy=round(self.cpu_busy, 3),
        )


async def _bounded(awaitable: Awaitable[Any], deadline: float) -> None:
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await awaitable
    except TimeoutError:
        pass


def agent_main(share: Share, run_id: str, inbox: Connection, outbox: Connection) -> None:
    """Entry point of a load-generator process."""
    # Ctrl-C reaches the whole process group: the parent decides, and stops us by pid.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warning = raise_open_file_limit(len(share.clients))
    if warning is not None:
        outbox.send(("fatal", warning + " or spread clients with --processes"))
        return

    async def main() -> int:
        await Agent(share, run_id, inbox, outbox).run()
        return 0

    runtime.run(main())


async def _newest_state(
    connection: ClientConnection, target: int, seconds: float = 15
) -> CounterState:
    """The first total on ``connection`` and those after it, until one has seq ``target``
    (or more) or ``seconds`` pass: the last one read."""
    state: CounterState | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while state is None or state.seq < target:
                message = json.loads(await connection.recv())
                if message.get("type") == "total":
                    state = CounterState(message["epoch"], message["seq"], message["total"])
    if state is None:
        raise TimeoutError(f"no total within {seconds:g} s")
    return state
