"""The worker: the only module that talks to websockets.

It answers HTTP probes in ``process_request``, serves one counter per
WebSocket connection, sends each client its acks, and fans totals out to the
clients of a counter with one prebuilt frame written to every connection.

A client that does not read is never queued more than one total: while its
transport is above the write high-water mark, newer totals replace the one
waiting (a total supersedes every older one), and a client stuck longer than
``slow_client_timeout`` is closed with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
import weakref
from collections.abc import Collection

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from . import page
from .auth import OPEN, AuthError, Grant, authorize, token_from
from .batcher import Batcher, Outcome
from .errors import CounterError, OutcomeUnknown, StoreRejected
from .hub import Hub
from .limits import raise_open_file_limit
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .protocol import (
    Applied,
    ClientError,
    CloseCode,
    CounterRoute,
    CounterState,
    ErrorCode,
    Increment,
    RouteError,
    ack_message,
    error_message,
    missed_updates,
    parse_client_message,
    parse_counter_route,
    split_path,
    total_message,
)
from .ratelimit import TokenBucket
from .settings import Settings
from .store import RedisStore

log = logging.getLogger("ws_counter.worker")


# What push_total did with a total, counted once per fan-out in _deliver.
SENT, HELD, REPLACED, DROPPED = 0, 1, 2, 3


def _text_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class Client:
    """One WebSocket connection and its conflation slot."""

    __slots__ = (
        "bucket",
        "connection",
        "counter",
        "grant",
        "initialized",
        "pending",
        "raw",
        "room",
        "since",
        "stalled",
        "unacked",
        "worker",
    )

    def __init__(
        self, worker: Worker, connection: ServerConnection, route: CounterRoute, grant: Grant
    ) -> None:
        self.worker = worker
        self.connection = connection
        self.counter = route.counter
        self.since = route.since
        self.grant = grant
        settings = worker.settings
        self.bucket = (
            TokenBucket(settings.rate_limit, settings.rate_burst, time.monotonic())
            if settings.rate_limit > 0
            else None
        )
        self.initialized = False
        # Without extensions a server frame is the same bytes for every
        # connection, so one serialized frame can be written to all of them.
        self.raw = not connection.protocol.extensions
        self.stalled = False
        self.pending: str | None = None
        self.unacked = 0
        self.room = asyncio.Event()
        self.room.set()

    def send_text(self, text: str) -> None:
        broadcast([self.connection], text)

    def push_total(self, state: CounterState, text: str, frame: bytes) -> int:
        """Send a counter's new total, or keep it as the one pending if the client is slow.

        Returns SENT, HELD (kept for later), REPLACED (kept, superseding an
        older pending total) or DROPPED (connection closing).
        """
        if not self.initialized:
            self.initialized = True
            text = total_message(self.counter, state, missed_updates(self.since, state))
            frame = b""
        if self.stalled:
            replaced = self.pending is not None
            self.pending = text
            return REPLACED if replaced else HELD
        connection = self.connection
        if connection.protocol.state is not State.OPEN:
            return DROPPED
        if connection.paused:
            self.stalled = True
            self.pending = text
            self.worker.spawn(self._send_when_writable())
            return HELD
        if frame and self.raw:
            connection.transport.write(frame)
        else:
            self.send_text(text)
        return SENT

    async def close_as_slow(self) -> None:
        """Close with 1008; abort if even the close frame cannot be written.

        websockets' close() waits for the send buffer to drain before its close
        timeout starts, so for a peer that reads nothing it would wait forever.
        """
        self.worker.metrics.slow_clients_closed.inc()
        log.info("closing slow client", extra={"event": "slow_client_closed"})
        try:
            async with asyncio.timeout(self.worker.settings.close_timeout):
                await self.connection.close(CloseCode.POLICY_VIOLATION, "slow consumer")
        except TimeoutError:
            self.connection.transport.abort()

    async def _send_when_writable(self) -> None:
        try:
            async with asyncio.timeout(self.worker.settings.slow_client_timeout):
                await self.connection.drain()
        except TimeoutError:
            await self.close_as_slow()
            return
        except ConnectionError:
            return
        self.stalled = False
        pending, self.pending = self.pending, None
        if pending is not None:
            self.worker.metrics.totals_sent.inc()
            self.send_text(pending)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(lambda: len(self.server.connections) if self.server else 0)
        # What each accepted handshake's token allows, from process_request to the handler.
        self._grants: weakref.WeakKeyDictionary[ServerConnection, Grant] = (
            weakref.WeakKeyDictionary()
        )
        self._was_connected = False
        self.store = RedisStore(settings)
        self.hub: Hub[Client] = Hub(self._deliver, self._on_rollback)
        self.batcher = Batcher(self.store)
        self.subscription = self.store.subscription(
            self.hub.on_subscribed, self.hub.on_state, self._on_redis_connection
        )
        self.hub.attach(self.subscription)
        self.draining = False
        self.server: Server | None = None
        self.port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self.hub.connected and not self.draining

    def spawn(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self.spawn(self.subscription.run())
        settings = self.settings
        self.server = await serve(
            self._handle,
            settings.host,
            settings.port,
            process_request=self._process_request,
            process_response=self._process_response,
            # None admits clients that send no Origin: they are not browsers.
            origins=_origins(settings),
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
            server_header="ws-counter",
        )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info(
            "listening on %s:%s",
            settings.host,
            self.port,
            extra={"event": "listening", "host": settings.host, "port": self.port},
        )

    def _on_redis_connection(self, up: bool) -> None:
        was_up = self.hub.connected
        self.hub.on_connection(up)
        if up and not was_up:
            if self._was_connected:
                self.metrics.redis_reconnects.inc()
            self._was_connected = True
            log.info("subscribed to redis", extra={"event": "ready", "port": self.port})
        elif was_up and not up:
            log.warning("redis connection lost", extra={"event": "redis_lost"})

    # HTTP side of the handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _ = split_path(request.path)
        if path == "/healthz":
            return connection.respond(200, "ok\n")
        if path == "/readyz":
            if self.ready:
                return connection.respond(200, "ready\n")
            reason = "draining" if self.draining else "not subscribed to Redis"
            return connection.respond(503, f"not ready: {reason}\n")
        if path == "/metrics":
            return _metrics_response(self.metrics)
        try:
            route = parse_counter_route(request.path)
        except RouteError as exc:
            return self._reject(connection, exc.status, exc.reason)
        if not _asks_for_websocket(request):
            return _html_response(route.counter)
        if self.draining:
            return self._reject(connection, 503, "worker is shutting down")
        if not self.hub.connected:
            return self._reject(connection, 503, "Redis is unavailable")
        assert self.server is not None
        if len(self.server.connections) >= self.settings.max_connections:
            return self._reject(connection, 503, "worker is at its connection limit")
        try:
            self._grants[connection] = self._authorize(request, route)
        except AuthError as exc:
            return self._reject(connection, exc.status, exc.reason)
        return None

    def _authorize(self, request: Request, route: CounterRoute) -> Grant:
        if not self.settings.jwt_secret:
            return OPEN
        token = token_from(route.token, request.headers.get("Authorization"))
        return authorize(self.settings.jwt_secret, token, route.counter)

    def _reject(self, connection: ServerConnection, status: int, reason: str) -> Response:
        return connection.respond(status, reason + "\n")

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        if _asks_for_websocket(request):
            status = response.status_code
            self.metrics.handshakes.labels("accepted" if status == 101 else str(status)).inc()

    # WebSocket side

    async def _handle(self, connection: ServerConnection) -> None:
        self._limit_send_buffer(connection)
        route = parse_counter_route(connection.request.path if connection.request else "/")
        client = Client(self, connection, route, self._grants.pop(connection, OPEN))
        group = self.hub.join(route.counter, client)
        try:
            if group.state is not None:
                client.push_total(group.state, "", b"")
            else:
                try:
                    async with asyncio.timeout(self.settings.open_timeout):
                        await group.known.wait()
                except TimeoutError:
                    await connection.close(CloseCode.TRY_AGAIN_LATER, "counter state unavailable")
                    return
            async for message in connection:
                self._on_message(client, message)
                await self._backpressure(client)
        except ConnectionClosed:
            pass
        finally:
            self.hub.leave(group, client)

    def _limit_send_buffer(self, connection: ServerConnection) -> None:
        # Left alone, Linux grows a socket's send buffer up to tcp_wmem's maximum
        # (4 MiB by default) for a peer that does not read: kernel memory no
        # conflation can reclaim. A fixed size makes such a peer show up as a
        # paused transport within a few KiB, after which it gets only the
        # newest total.
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_bytes
                )

    async def _backpressure(self, client: Client) -> None:
        """Stop reading a client that has too much unacknowledged or unread."""
        if client.room.is_set() and not client.connection.paused:
            # The common case, without arming a timer per message (a profile of
            # the throughput run showed that cost about a tenth of the worker).
            return
        try:
            async with asyncio.timeout(self.settings.slow_client_timeout):
                await client.room.wait()
                await client.connection.drain()
        except TimeoutError:
            await client.close_as_slow()

    def _on_message(self, client: Client, message: str | bytes) -> None:
        try:
            increment = parse_client_message(message)
        except ClientError as exc:
            self.metrics.invalid.inc()
            client.send_text(error_message(exc.code, exc.message, exc.increment_id))
            return
        refusal = self._refusal(client, increment)
        if refusal is not None:
            client.send_text(refusal)
            return
        if self.draining or not self.hub.connected:
            self.metrics.failed.inc()
            reason = "worker is shutting down" if self.draining else "Redis is unavailable"
            client.send_text(
                error_message(
                    ErrorCode.UNAVAILABLE, f"{reason}; the increment was not applied", increment.id
                )
            )
            return
        future = self.batcher.submit(client.counter, increment)
        client.unacked += 1
        if client.unacked >= self.settings.max_pending_increments:
            client.room.clear()
        future.add_done_callback(lambda done: self._on_outcome(client, increment, done))

    def _refusal(self, client: Client, increment: Increment) -> str | None:
        """The error for an increment this client may not make now, if any."""
        if not client.grant.incr:
            self.metrics.forbidden.inc()
            return error_message(
                ErrorCode.FORBIDDEN,
                f"this token may read counter {client.counter} but not increment it",
                increment.id,
            )
        if client.bucket is not None and not client.bucket.take(time.monotonic()):
            self.metrics.rate_limited.inc()
            return error_message(
                ErrorCode.RATE_LIMITED,
                f"more than {self.settings.rate_limit:g} increments per second on this"
                " connection; not applied, send it again later",
                increment.id,
            )
        return None

    def _on_outcome(
        self, client: Client, increment: Increment, future: asyncio.Future[Outcome]
    ) -> None:
        client.unacked -= 1
        if client.unacked < self.settings.max_pending_increments:
            client.room.set()
        if future.cancelled():
            return
        exc = future.exception()
        outcome = future.result() if exc is None else None
        if isinstance(outcome, Applied):
            (self.metrics.duplicate if outcome.duplicate else self.metrics.applied).inc()
            client.send_text(ack_message(increment, outcome))
            return
        self.metrics.failed.inc()
        client.send_text(_failure_message(increment, outcome if exc is None else exc))

    def _on_rollback(self, counter: str, epoch: str) -> None:
        log.warning(
            "counter %s went back in time within epoch %s; starting a new epoch",
            counter,
            epoch,
            extra={"event": "rollback", "counter": counter},
        )
        self.metrics.rollbacks.inc()
        self.spawn(self._rebase(counter, epoch))

    async def _rebase(self, counter: str, epoch: str) -> None:
        # On failure the next state of the old epoch triggers another attempt.
        with contextlib.suppress(CounterError):
            await self.store.rebase(counter, epoch)

    def _deliver(self, counter: str, clients: Collection[Client], state: CounterState) -> None:
        metrics = self.metrics
        if state.published_ms is not None:
            metrics.fanout_lag.observe(max(0.0, time.time() - state.published_ms / 1000))
        text = total_message(counter, state)
        frame = _text_frame(text)
        outcomes = [0, 0, 0, 0]
        for client in clients:
            outcomes[client.push_total(state, text, frame)] += 1
        metrics.totals_sent.inc(outcomes[SENT])
        if outcomes[REPLACED]:
            metrics.totals_conflated.inc(outcomes[REPLACED])

    # Shutdown

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
        if self.server is not None:
            self.server.close(code=CloseCode.SERVICE_RESTART, reason="service restart")
            try:
                async with asyncio.timeout(self.settings.drain_timeout):
                    await self.server.wait_closed()
            except TimeoutError:
                log.warning("clients did not close in time", extra={"event": "drain_timeout"})
        await self.close()

    async def close(self) -> None:
        await self.batcher.close()
        await self.subscription.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self.store.close()
        log.info("stopped", extra={"event": "stopped"})


def _failure_message(increment: Increment, failure: object) -> str:
    if isinstance(failure, StoreRejected):
        if "overflow" in str(failure):
            return error_message(
                ErrorCode.OVERFLOW,
                "the total would leave the signed 64-bit range; not applied",
                increment.id,
            )
        return error_message(ErrorCode.REJECTED, f"Redis refused: {failure}", increment.id)
    if isinstance(failure, OutcomeUnknown):
        return error_message(
            ErrorCode.UNAVAILABLE,
            "lost contact with Redis while applying: the increment may or may not have been"
            " applied; retry with the same id to apply it exactly once",
            increment.id,
        )
    if isinstance(failure, CounterError):
        return error_message(
            ErrorCode.UNAVAILABLE,
            "Redis is unavailable; the increment was not applied",
            increment.id,
        )
    log.error("unexpected failure of an increment: %r", failure)
    return error_message(ErrorCode.UNAVAILABLE, "internal error; not applied", increment.id)


def _asks_for_websocket(request: Request) -> bool:
    """A WebSocket handshake, as opposed to a plain GET of the same path (the page)."""
    return "websocket" in request.headers.get("Upgrade", "").lower()


def _origins(settings: Settings) -> list[Origin | None] | None:
    """The Origin allow-list; None admits clients that send no Origin (they are not browsers)."""
    if not settings.allowed_origins:
        return None
    return [*(Origin(origin) for origin in settings.allowed_origins), None]


def _metrics_response(metrics: Metrics) -> Response:
    body = metrics.render()
    headers = Headers([("Content-Type", METRICS_CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return Response(200, "OK", headers, body)


def _html_response(counter: str) -> Response:
    body = page.render(counter)
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", page.CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(200, "OK", headers, body)


async def serve_until_signalled(settings: Settings) -> int:
    """Run one worker until SIGTERM or SIGINT, then drain and return the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    warning = raise_open_file_limit(settings.max_connections)
    if warning is not None:
        log.warning(warning, extra={"event": "open_file_limit"})
    worker = Worker(settings)
    await worker.start()
    await stop.wait()
    await worker.drain()
    return 0
