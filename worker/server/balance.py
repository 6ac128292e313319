"""Connections follow capacity: the worker's side of worker/core/balance.py.

Every BALANCE_PERIOD seconds the worker reports its connection count to Redis
and reads the fleet's; a surplus over the mean is closed with 1012 over the
next period, a slice at a time, within WS_REBALANCE_RATE a minute. The clients
reconnect through the balancer, which places them on workers with fewer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket

from ..core.balance import BALANCE_PERIOD, to_close
from ..core.protocol import CloseCode
from ..errors import StoreError
from ..store.fleet import report_connections
from .context import WorkerContext
from .drain import close_over

log = logging.getLogger("ws_counter.worker")
REBALANCING = "rebalancing: reconnect"


class Rebalancer:
    def __init__(self, worker: WorkerContext) -> None:
        self.worker = worker
        # Unique per process: a restarted worker is a new one, the old one's report ages out.
        self.name = f"{socket.gethostname()}-{secrets.token_hex(3)}"

    async def run(self) -> None:
        """Report, compare, close the surplus; every BALANCE_PERIOD seconds, for ever."""
        while True:
            # The period is a timer: reports are made on time, not on an event.
            await asyncio.sleep(BALANCE_PERIOD)
            await self.balance_once()

    async def balance_once(self) -> None:
        worker = self.worker
        if worker.draining or worker.server is None:
            return
        own = worker.connection_count()
        try:
            fleet = await report_connections(worker.store, self.name, own)
        except StoreError as exc:
            log.debug("connection count not reported: %s", exc)
            return
        count = to_close(own, fleet, worker.settings.rebalance_rate)
        if not count:
            return
        # The server's own set: the count above may include a handshake not in it yet.
        connections = list(worker.server.connections)
        chosen = random.sample(connections, min(count, len(connections)))
        log.info(
            "closing %d of %d connections: the fleet's mean is %.0f",
            len(chosen),
            own,
            sum(fleet.values()) / len(fleet),
            extra={"event": "rebalancing", "closing": len(chosen), "workers": len(fleet)},
        )
        worker.metrics.rebalanced.inc(len(chosen))
        # Spread over the period, in a task of its own: the next report stays on time.
        worker.tasks.spawn(
            close_over(
                chosen,
                BALANCE_PERIOD,
                lambda c: worker.tasks.spawn(c.close(CloseCode.SERVICE_RESTART, REBALANCING)),
            ),
            "rebalance_close",
        )
