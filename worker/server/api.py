"""What every plain HTTP request gets: probes, metrics, the page, the client module and the API.

The API's rules (routes, negotiation, bodies, statuses) are in
``ws_counter.worker.core.httpapi``; this module carries them out against the worker.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources

import orjson

from ..core.auth import Grant, grant_for
from ..core.httpapi import (
    CLIENT_SCRIPT_PATH,
    CODE_OF_STATUS,
    FIXED_PATHS,
    JSON,
    OPENAPI_PATH,
    ApiRoute,
    media_type,
    parse_api_route,
    parse_increment_body,
    status_of,
    wants_json,
)
from ..core.protocol import (
    DEFAULT_COUNTER,
    ErrorCode,
    Unavailable,
    error_message,
    split_path,
    state_document,
)
from ..errors import ClientError, Refused, StoreError
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from . import page
from .context import WorkerContext
from .http import HttpConnection, HttpRequest, HttpResponse
from .increments import Increments, Reply

TEXT = "text/plain; charset=utf-8"
# A refusal that may succeed if sent again: when to try.
RETRY_AFTER_SECONDS = "1"


class Api:
    """Answers one HTTP request; keeps nothing between requests."""

    def __init__(self, worker: WorkerContext, increments: Increments) -> None:
        self.worker = worker
        self.increments = increments

    async def handle(self, request: HttpRequest, connection: HttpConnection) -> HttpResponse:
        response = await self._route(request, connection)
        self.worker.metrics.http_requests.labels(str(response.status)).inc()
        return response

    async def _route(self, request: HttpRequest, connection: HttpConnection) -> HttpResponse:  # noqa: PLR0911 (a router: one return per route)
        path, _ = split_path(request.target)
        method = request.method
        if path in FIXED_PATHS:
            if method not in ("GET", "HEAD"):
                return _not_allowed("GET, HEAD")
            response = self._fixed(path)
            if path == CLIENT_SCRIPT_PATH:
                response.headers.extend(self._cross_origin(request.headers.get("origin")))
            return response
        try:
            route = ApiRoute(DEFAULT_COUNTER, False) if path == "/" else parse_api_route(path)
        except Refused as exc:
            return _refused(exc)
        if route is None:
            return _error(404, ErrorCode.NOT_FOUND, "no such endpoint")
        if route.increments:
            if method != "POST":
                return _not_allowed("POST")
            return await self._increment(route.counter, request, connection)
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET, HEAD")
        if not wants_json(request.headers.get("accept")):
            return _page(route.counter)
        return await self._state(route.counter, request)

    def _fixed(self, path: str) -> HttpResponse:
        """Probes, metrics and the static documents (FIXED_PATHS)."""
        worker = self.worker
        if path == "/healthz":
            return _text(200, "ok\n")
        if path == "/readyz":
            if worker.ready:
                return _text(200, "ready\n")
            # The operator's view: what is wrong with Redis, naming the setting to fix.
            trouble = (
                worker.store.misconfigured
                or worker.subscription.trouble.reason
                or "not subscribed to Redis"
            )
            reason = "draining" if worker.draining else trouble
            return _text(503, f"not ready: {reason}\n")
        if path == "/metrics":
            return HttpResponse(
                200, worker.metrics.render(), [("Content-Type", METRICS_CONTENT_TYPE)]
            )
        if path == CLIENT_SCRIPT_PATH:
            return HttpResponse(
                200,
                _static("client.js"),
                [
                    ("Content-Type", "text/javascript; charset=utf-8"),
                    ("Cache-Control", "no-cache"),
                    ("X-Content-Type-Options", "nosniff"),
                ],
            )
        assert path == OPENAPI_PATH
        return HttpResponse(200, _static("openapi.json"), [("Content-Type", JSON)])

    def _cross_origin(self, origin: str | None) -> list[tuple[str, str]]:
        """CORS headers that let pages of another origin import /client.js (a module
        script is fetched in CORS mode): any origin when WS_ALLOWED_ORIGINS is unset,
        since any may then open the WebSocket too; else only the listed ones."""
        allowed = self.worker.settings.allowed_origins
        if not allowed:
            return [("Access-Control-Allow-Origin", "*")]
        vary = ("Vary", "Origin")
        if origin is not None and origin.rstrip("/") in allowed:
            return [("Access-Control-Allow-Origin", origin), vary]
        return [vary]

    def _grant(self, request: HttpRequest, counter: str) -> Grant:
        # The API takes tokens only from the header: a URL's query ends up in logs.
        authorization = request.headers.get("authorization")
        return grant_for(self.worker.settings.jwt_secret, None, authorization, counter)

    async def _state(self, counter: str, request: HttpRequest) -> HttpResponse:
        try:
            self._grant(request, counter)
            state = await self.worker.store.read(counter)
        except Refused as exc:
            return _refused(exc)
        except StoreError:
            return _error(503, ErrorCode.UNAVAILABLE, Unavailable.REDIS)
        return _json(200, orjson.dumps(state_document(counter, state)))

    async def _increment(
        self, counter: str, request: HttpRequest, connection: HttpConnection
    ) -> HttpResponse:
        content_type = media_type(request.headers.get("content-type"))
        if content_type and content_type != JSON:
            return _error(
                415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"
            )
        increments = self.increments
        try:
            grant = self._grant(request, counter)
            increment = parse_increment_body(request.body, request.headers.get("idempotency-key"))
        except Refused as exc:
            return _refused(exc)
        except ClientError as exc:
            return _reply(increments.invalid(exc))
        refusal = increments.refusal(counter, grant, connection.bucket, increment)
        if refusal is not None:
            return _reply(refusal)
        # Not cancelled if the client goes away: the increment is applied (or
        # not) all the same, and a retry with its key gets the same answer.
        future = increments.submit(counter, increment)
        # asyncio.wait neither raises the failure (the reply carries it) nor cancels
        # the future when this request's task is cancelled.
        await asyncio.wait((future,))
        return _reply(increments.reply(increment, future))


@cache
def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("web", name).read_bytes()


def _text(status: int, text: str) -> HttpResponse:
    return HttpResponse(status, text.encode(), [("Content-Type", TEXT)])


def _json(status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    # A closing newline, so that curl's output leaves the shell prompt on a line of its own.
    return HttpResponse(status, body + b"\n", [("Content-Type", JSON), *(headers or [])])


def _error(status: int, code: str, message: str) -> HttpResponse:
    return _json(status, error_message(code, message).encode(), _error_headers(status))


def _refused(exc: Refused) -> HttpResponse:
    return _error(exc.status, CODE_OF_STATUS[exc.status], exc.reason)


def _reply(reply: Reply) -> HttpResponse:
    """An increment's ack (200) or error, the same text a WebSocket client gets."""
    if reply.code is None:
        return _json(200, reply.text.encode())
    status = status_of(reply.code)
    return _json(status, reply.text.encode(), _error_headers(status))


def _error_headers(status: int) -> list[tuple[str, str]]:
    if status == 401:
        return [("WWW-Authenticate", "Bearer")]
    if status in (429, 503):
        return [("Retry-After", RETRY_AFTER_SECONDS)]
    return []


def _not_allowed(allow: str) -> HttpResponse:
    response = _error(405, ErrorCode.METHOD_NOT_ALLOWED, f"this path takes {allow}")
    response.headers.append(("Allow", allow))
    return response


def _page(counter: str) -> HttpResponse:
    return HttpResponse(
        200,
        page.render(counter),
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", page.CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
