"""Who may open a WebSocket: the route, the worker's admission and the token.

Only WebSocket upgrade requests reach websockets (``front`` sends every other
request to ``api``), so every request here asks for a WebSocket.
"""

from __future__ import annotations

import weakref

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response
from websockets.typing import Origin

from ..core.auth import OPEN, Grant, grant_for
from ..core.protocol import CounterRoute, parse_counter_route, unavailable_reason
from ..errors import Refused
from ..settings import Settings
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
        try:
            route = parse_counter_route(request.path)
            self._admit(connection)
            self._grants[connection] = self._authorize(request, route)
        except Refused as exc:
            return connection.respond(exc.status, exc.reason + "\n")
        return None

    def _admit(self, connection: ServerConnection) -> None:
        worker = self.worker
        reason = unavailable_reason(
            draining=worker.draining,
            redis_up=worker.redis_up,
            at_connection_limit=worker.at_connection_limit,
        )
        if reason is not None:
            raise Refused(503, reason)

    def _authorize(self, request: Request, route: CounterRoute) -> Grant:
        authorization = request.headers.get("Authorization")
        return grant_for(self.worker.settings.jwt_secret, route.token, authorization, route.counter)

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        status = response.status_code
        self.worker.metrics.handshakes.labels("accepted" if status == 101 else str(status)).inc()


def allowed_origins(settings: Settings) -> list[Origin | None] | None:
    """The Origin allow-list; None admits clients that send no Origin (they are not browsers)."""
    if not settings.allowed_origins:
        return None
    return [*(Origin(origin) for origin in settings.allowed_origins), None]
