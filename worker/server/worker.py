"""The worker: the websockets server, the Redis store, and the parts between them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .. import runtime
from ..batcher import Batcher
from ..core.hub import Hub
from ..core.protocol import CloseCode, ErrorCode, Unavailable, parse_counter_route
from ..errors import StoreError
from ..metrics import Metrics
from ..settings import Settings
from ..store import RedisStore, certificates, follow
from ..tasks import FAILURES, TaskSet
from .api import Api
from .balance import Rebalancer
from .connection import CounterConnection, rate_limit_bucket
from .drain import close_over
from .fanout import Fanout
from .front import FrontDoor
from .handshake import Handshakes, allowed_origins
from .http import HttpConnection, closing_response
from .increments import Increments
from .wire import front_connection_class, limit_send_buffer

log = logging.getLogger("ws_counter.worker")
RESTART = "service restart"

AT_CONNECTION_LIMIT = closing_response(
    503, ErrorCode.UNAVAILABLE, Unavailable.AT_CONNECTION_LIMIT, retry_after=True
)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.port: int | None = None
        self.draining = False
        self.tasks = TaskSet()
        # Plain HTTP connections (the API, probes, the page), kept for the drain.
        self.http_connections: set[HttpConnection] = set()
        self.metrics = Metrics(self, settings.max_connections, runtime.build())
        self.metrics.count_task_failures(lambda: FAILURES)
        self.metrics.export_certificate_expiry(lambda: certificates.EXPIRY)
        self.store = RedisStore(settings)
        self.hub: Hub[CounterConnection] = Hub(
            Fanout(self.metrics).deliver,
            self._on_rollback,
            asyncio.get_running_loop().call_soon,
            self._on_redis_connection,
        )
        self.batcher = Batcher(self.store, on_answered=self.metrics.increment_seconds.observe)
        self.subscription = follow(self.store, self.hub)
        self.hub.attach(self.subscription)
        self.handshakes = Handshakes(self)
        self.increments = Increments(self)
        self.api = Api(self, self.increments)
        self._http_gone = asyncio.Event()
        self._http_gone.set()
        self._was_connected = False
        self._open = 0

    @property
    def redis_up(self) -> bool:
        """Subscribed to Redis, and Redis accepts the worker's credentials and ACL."""
        return self.hub.connected and not self.store.misconfigured

    @property
    def ready(self) -> bool:
        return self.redis_up and not self.draining

    @property
    def at_connection_limit(self) -> bool:
        """WebSocket and plain HTTP connections together fill WS_MAX_CONNECTIONS."""
        return self._open + len(self.http_connections) >= self.settings.max_connections

    def connection_count(self) -> int:
        """Open WebSocket connections: kept as a count, because websockets' own
        ``Server.connections`` builds a set of them on every call, which a profile of a
        ramp of thousands of clients showed once per handshake."""
        return self._open

    async def start(self) -> None:
        # Each runs for ever: supervised, restarted should one fail (worker/tasks.py).
        self.tasks.keep("subscription", self.subscription.run)
        if self.store.follows_failovers:
            self.tasks.keep("sentinel_watch", self.store.watch_failovers)
        if self.settings.rebalance_rate:
            self.tasks.keep("rebalance", Rebalancer(self).run)
        settings = self.settings
        self.server = await serve(
            self._handle,
            settings.host,
            settings.port,
            create_connection=front_connection_class(
                FrontDoor(self._start_http, settings.open_timeout)
            ),
            process_request=self.handshakes.process_request,
            process_response=self.handshakes.process_response,
            origins=allowed_origins(settings),
            compression="deflate" if settings.compression else None,
            max_size=settings.max_message_bytes,
            open_timeout=settings.open_timeout,
            ping_interval=settings.ping_interval or None,
            ping_timeout=settings.ping_interval or None,
            close_timeout=settings.close_timeout,
            # The user-space buffer above the kernel's: together they bound what
            # a connection that stopped reading can hold.
            write_limit=settings.send_buffer_bytes,
            reuse_port=settings.reuse_port,
            # asyncio's default of 100 overflowed at 2,000 joins a second (python -m
            # bench.churn): dropped SYNs came back a second later, or timed out.
            # The kernel caps it at net.core.somaxconn (4,096 by default).
            backlog=4096,
            server_header="ws-counter",
        )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info(
            "listening on %s:%s (%s build)",
            settings.host,
            self.port,
            runtime.build(),
            extra={
                "event": "listening",
                "host": settings.host,
                "port": self.port,
                "build": runtime.build(),
                "gc_threshold": runtime.collector_thresholds(),
            },
        )

    def _start_http(self, transport: asyncio.Transport) -> HttpConnection | None:
        """Take a connection for plain HTTP; at the connection limit, answer 503 and close it."""
        if self.at_connection_limit:
            transport.write(AT_CONNECTION_LIMIT)
            transport.close()
            return None
        connection = HttpConnection(
            transport,
            self.api.handle,
            max_body=self.settings.max_message_bytes,
            timeout=self.settings.open_timeout,
            bucket=rate_limit_bucket(self.settings),
            closing=lambda: self.draining,
            on_closed=self._http_closed,
        )
        self.http_connections.add(connection)
        self._http_gone.clear()
        return connection

    def _http_closed(self, connection: HttpConnection) -> None:
        self.http_connections.discard(connection)
        if not self.http_connections:
            self._http_gone.set()

    def _on_redis_connection(self, up: bool) -> None:
        if not up:
            return  # logged once, with its reason, by the subscription
        if self._was_connected:
            self.metrics.redis_reconnects.inc()
        self._was_connected = True
        log.info("subscribed to redis", extra={"event": "ready", "port": self.port})

    async def _handle(self, connection: ServerConnection) -> None:
        limit_send_buffer(connection, self.settings.send_buffer_bytes)
        route = parse_counter_route(connection.request.path if connection.request else "/")
        client = CounterConnection(self, connection, route, self.handshakes.grant_of(connection))
        group = self.hub.join(route.counter, client)
        self._open += 1
        try:
            if group.state is not None:
                client.push_total(group.state, "", b"")
            elif not await _arrives(client.first_total, self.settings.open_timeout):
                await connection.close(CloseCode.TRY_AGAIN_LATER, "counter state unavailable")
                return
            async for message in connection:
                self.increments.on_message(client, message)
                await client.wait_for_room()
        except ConnectionClosed:
            pass
        finally:
            self._open -= 1
            self.hub.leave(group, client)

    def _on_rollback(self, counter: str, epoch: str) -> None:
        log.warning(
            "counter %s went back in time within epoch %s; starting a new epoch",
            counter,
            epoch,
            extra={"event": "rollback", "counter": counter},
        )
        self.metrics.rollbacks.inc()
        self.tasks.spawn(_rebase(self.store, counter, epoch))

    async def drain(self) -> None:
        """Stop serving: /readyz 503 at once, finish in-flight increments, close with 1012."""
        if self.draining:
            return
        self.draining = True
        log.info("draining", extra={"event": "draining"})
        if self.settings.drain_delay:
            await asyncio.sleep(self.settings.drain_delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.redis_timeout):
                await self.batcher.wait_idle()
        # Idle HTTP connections close now, busy ones after their response; the
        # WebSockets over the spread. One drain timeout bounds what is left of
        # both, so the worst case is delay + Redis timeout + spread + timeout.
        for connection in list(self.http_connections):
            if connection.idle:
                connection.close()
        if self.server is not None:
            if self.settings.drain_spread:
                # No new clients meanwhile; the open ones close a slice at a time.
                self.server.server.close()
                await close_over(
                    list(self.server.connections),
                    self.settings.drain_spread,
                    lambda c: self.tasks.spawn(c.close(CloseCode.SERVICE_RESTART, RESTART)),
                )
            self.server.close(code=CloseCode.SERVICE_RESTART, reason=RESTART)
        try:
            async with asyncio.timeout(self.settings.drain_timeout):
                await self._http_gone.wait()
                if self.server is not None:
                    await self.server.wait_closed()
        except TimeoutError:
            log.warning("clients did not close in time", extra={"event": "drain_timeout"})
        for connection in list(self.http_connections):
            connection.close()
        await self.close()

    async def close(self) -> None:
        await self.batcher.close()
        await self.subscription.close()
        await self.tasks.cancel_all()
        await self.store.close()
        log.info("stopped", extra={"event": "stopped"})


async def _arrives(event: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def _rebase(store: RedisStore, counter: str, epoch: str) -> None:
    # On failure the next state of the old epoch triggers another attempt.
    with contextlib.suppress(StoreError):
        await store.rebase(counter, epoch)
