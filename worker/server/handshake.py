"""The HTTP side of a connection: probes, metrics, the page, and who may open a WebSocket."""

from __future__ import annotations

import weakref

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Origin

from ..core.auth import OPEN, Grant, authorize, token_from
from ..core.protocol import CounterRoute, parse_counter_route, split_path
from ..errors import Refused
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..settings import Settings
from . import page
from .context import WorkerContext


class Handshakes:
    """``process_request`` and ``process_response`` of the websockets server."""

    def __init__(self, worker: WorkerContext) -> None:
        self.worker = worker
        # What each accepted handshake's token allows, from process_request to the handler.
        self._grants: weakref.WeakKeyDictionary[ServerConnection, Grant] = (
            weakref.WeakKeyDictionary()
        )

    def grant_of(self, connection: ServerConnection) -> Grant:
        return self._grants.pop(connection, OPEN)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _ = split_path(request.path)
        probe = self._probe(connection, path)
        if probe is not None:
            return probe
        try:
            route = parse_counter_route(request.path)
            if not asks_for_websocket(request):
                return _page_response(route.counter)
            self._admit(connection)
            self._grants[connection] = self._authorize(request, route)
        except Refused as exc:
            return connection.respond(exc.status, exc.reason + "\n")
        return None

    def _probe(self, connection: ServerConnection, path: str) -> Response | None:
        worker = self.worker
        if path == "/healthz":
            return connection.respond(200, "ok\n")
        if path == "/readyz":
            if worker.ready:
                return connection.respond(200, "ready\n")
            reason = "draining" if worker.draining else "not subscribed to Redis"
            return connection.respond(503, f"not ready: {reason}\n")
        if path == "/metrics":
            body = worker.metrics.render()
            return _response(body, [("Content-Type", METRICS_CONTENT_TYPE)])
        return None

    def _admit(self, connection: ServerConnection) -> None:
        worker = self.worker
        if worker.draining:
            raise Refused(503, "worker is shutting down")
        if not worker.redis_up:
            raise Refused(503, "Redis is unavailable")
        if worker.connection_count() >= worker.settings.max_connections:
            raise Refused(503, "worker is at its connection limit")

    def _authorize(self, request: Request, route: CounterRoute) -> Grant:
        secret = self.worker.settings.jwt_secret
        if not secret:
            return OPEN
        token = token_from(route.token, request.headers.get("Authorization"))
        return authorize(secret, token, route.counter)

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        if asks_for_websocket(request):
            status = response.status_code
            outcome = "accepted" if status == 101 else str(status)
            self.worker.metrics.handshakes.labels(outcome).inc()


def asks_for_websocket(request: Request) -> bool:
    """A WebSocket handshake, as opposed to a plain GET of the same path (the page)."""
    return "websocket" in request.headers.get("Upgrade", "").lower()


def allowed_origins(settings: Settings) -> list[Origin | None] | None:
    """The Origin allow-list; None admits clients that send no Origin (they are not browsers)."""
    if not settings.allowed_origins:
        return None
    return [*(Origin(origin) for origin in settings.allowed_origins), None]


def _response(body: bytes, headers: list[tuple[str, str]]) -> Response:
    all_headers = Headers([*headers, ("Content-Length", str(len(body)))])
    return Response(200, "OK", all_headers, body)


def _page_response(counter: str) -> Response:
    return _response(
        page.render(counter),
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", page.CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
