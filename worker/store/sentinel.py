"""Following a Sentinel failover as it happens, not when the old primary lets go.

A primary cut off from its replicas and Sentinels (but not from the workers)
stays a primary in its own eyes until the partition heals; the workers'
connections to it stay open. Waiting for it to close them meant no increment
was acknowledged for as long as the partition lasted, although the Sentinels
had promoted a replica seconds in. So each worker subscribes to
``+switch-master`` on every Sentinel (one connection each, reconnected with
backoff) and, when the Sentinels announce a new address for our master,
drops every connection to the old one: the next connection asks the Sentinels
where the master is, and the subscription resubscribes and resyncs there.

Between the partition and the switch, the old primary refuses writes by
itself once no replica has answered it for ``min-replicas-max-lag`` seconds
(NOREPLICAS, every configuration we ship with replicas sets it); those
refusals, a WAIT that a replica did not confirm and a READONLY reply make
the worker ask the Sentinels again too, for idle connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import ConnectionPool

from ..core.backoff import backoff_delays
from .errors import misconfiguration
from .pubsub import listen
from .typed import close_pubsub

log = logging.getLogger("ws_counter.store")

SWITCH_CHANNEL = "+switch-master"
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 2.0


class FailoverWatch:
    """Hears ``+switch-master`` from every Sentinel and drops ``pools``' connections to a
    master the Sentinels no longer name."""

    def __init__(
        self,
        sentinels: tuple[tuple[str, int], ...],
        master_name: str,
        options: dict[str, Any],
        pools: list[ConnectionPool],
        reply_timeout: float,
    ) -> None:
        self._sentinels = sentinels
        self._master_name = master_name
        self._options = options
        self._pools = pools
        self._master: str | None = None
        self._reply_timeout = reply_timeout
        # A Sentinel refused our credentials or TLS (REDIS_SENTINEL_*): /readyz says so.
        self.misconfigured: str | None = None

    async def ask_again(self) -> None:
        """Drop idle connections to the requests' master, so the next asks the Sentinels."""
        await self._pools[0].disconnect(inuse_connections=False)

    async def _switched(self, address: str) -> None:
        if address == self._master:
            return
        log.warning(
            "the Sentinels made %s the master; reconnecting",
            address,
            extra={"event": "redis_failover"},
        )
        self._master = address
        for pool in self._pools:
            await pool.disconnect(inuse_connections=True)

    async def run(self) -> None:
        """Watch until cancelled."""
        await asyncio.gather(*(self._watch(host, port) for host, port in self._sentinels))

    async def _watch(self, host: str, port: int) -> None:
        delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
        while True:
            client = aioredis.Redis(host=host, port=port, **self._options)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(SWITCH_CHANNEL)
                delays = backoff_delays(BACKOFF_FIRST, BACKOFF_CAP)
                self.misconfigured = None
                # A Sentinel that vanished silently is noticed, as a data node is.
                await listen(pubsub, self._heard, self._reply_timeout)
            except (redis_errors.RedisError, OSError) as exc:
                self._failed(f"{host}:{port}", exc)
            finally:
                with contextlib.suppress(redis_errors.RedisError, OSError):
                    await close_pubsub(pubsub)
                    await client.aclose()
            await asyncio.sleep(next(delays))

    def _failed(self, sentinel: str, exc: BaseException) -> None:
        wrong = misconfiguration(exc, sentinel=True)
        if wrong is None:
            log.debug("sentinel %s: %s", sentinel, exc)
            return
        reason = f"Sentinel {sentinel} is misconfigured: {wrong}"
        if reason != self.misconfigured:
            log.error("%s", reason, extra={"event": "redis_misconfigured"})
        self.misconfigured = reason

    async def _heard(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        # "<master name> <old ip> <old port> <new ip> <new port>"
        parts = str(message.get("data", "")).split()
        if len(parts) == 5 and parts[0] == self._master_name:
            await self._switched(f"{parts[3]}:{parts[4]}")
