"""Plain HTTP/1.1 on the worker's port: h11 parses, a handler answers, one request at a time.

websockets answers only what leads to a WebSocket (its parser refuses request
bodies, so it cannot take a POST); ``front`` hands every other connection
here. A connection is kept alive between requests, but each request must
arrive whole within the open timeout of the connection falling idle, so a
client cannot hold a connection open by trickling bytes. While a request is
being answered the connection is not read, and while its responses are not
being read it is not read either: what a peer can make the worker buffer is
one request (at most the body limit plus h11's 16 KiB head limit) and one
response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

from ..core.protocol import ErrorCode, error_message
from ..core.ratelimit import TokenBucket

log = logging.getLogger("ws_counter.worker")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    # Header names in lower case; repeated headers joined with ", ".
    headers: dict[str, str]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[HttpRequest, "HttpConnection"], Awaitable[HttpResponse]]


class HttpConnection:
    """One HTTP/1.1 connection, driven by the asyncio protocol that owns its transport."""

    def __init__(
        self,
        transport: asyncio.Transport,
        handler: Handler,
        *,
        max_body: int,
        timeout: float,
        bucket: TokenBucket | None,
        closing: Callable[[], bool],
        on_closed: Callable[[HttpConnection], None],
    ) -> None:
        self.transport = transport
        # The connection's rate limit, as a WebSocket connection has one.
        self.bucket = bucket
        self._handler = handler
        self._max_body = max_body
        self._timeout = timeout
        self._closing = closing
        self._on_closed = on_closed
        self._h11 = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._answering: asyncio.Task[None] | None = None
        self._write_paused = False
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._arm_timer()

    @property
    def idle(self) -> bool:
        return self._answering is None and self._request is None

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        self._read_events()

    def eof_received(self) -> bool:
        """The peer will send no more; what it asked for is still answered."""
        self._h11.receive_data(b"")
        self._read_events()
        return True

    def connection_lost(self) -> None:
        self._closed = True
        self._cancel_timer()
        self._on_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._answering is None:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cancel_timer()
            self.transport.close()

    def _read_events(self) -> None:
        while self._answering is None and not self._closed:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._refuse(exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self._max_body:
                    self._refuse(413, f"the body is larger than {self._max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                self._answer()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()

    def _on_request(self, request: h11.Request) -> None:
        self._request = request
        length = _header(list(request.headers), b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            self._refuse(413, f"the body is larger than {self._max_body} bytes")

    def _answer(self) -> None:
        request, self._request = self._request, None
        assert request is not None
        self._cancel_timer()
        self.transport.pause_reading()
        headers: dict[str, str] = {}
        for name, value in request.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        parsed = HttpRequest(
            request.method.decode("ascii"),
            request.target.decode("latin-1"),
            headers,
            bytes(self._body),
        )
        self._body.clear()
        self._answering = self._loop.create_task(self._respond(parsed))

    async def _respond(self, request: HttpRequest) -> None:
        try:
            response = await self._handler(request, self)
        except Exception:
            log.exception("HTTP handler failed", extra={"event": "http_handler_failed"})
            response = internal_error()
        self._answering = None
        if self._closed:
            return
        self._send(response, head_only=request.method == "HEAD")
        if self._closed:
            return
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._arm_timer()
            if not self._write_paused:
                self.transport.resume_reading()
            # A pipelined request may already be in h11's buffer.
            self._read_events()
        else:
            self.close()

    def _send(self, response: HttpResponse, *, head_only: bool = False) -> None:
        headers = [*response.headers, ("Content-Length", str(len(response.body)))]
        if self._closing():
            headers.append(("Connection", "close"))
        h11_connection = self._h11
        try:
            data = h11_connection.send(
                h11.Response(
                    status_code=response.status, headers=headers, reason=_reason(response.status)
                )
            )
            if response.body and not head_only:
                data += h11_connection.send(h11.Data(data=response.body)) or b""
            data += h11_connection.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            self.close()
            return
        self.transport.write(data or b"")
        if h11_connection.our_state is h11.MUST_CLOSE:
            self.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request that cannot be read (or is too large) and close the connection."""
        self._request = None
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            code = ErrorCode.TOO_LARGE if status == 413 else ErrorCode.BAD_REQUEST
            self.transport.write(closing_response(status, code, reason))
        self.close()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        self._timer = self._loop.call_later(self._timeout, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        # Idle between requests, or a request that did not arrive whole in time.
        self._timer = None
        self.close()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def internal_error() -> HttpResponse:
    """The last resort when a handler fails: JSON like every other error of the API."""
    message = error_message(
        ErrorCode.INTERNAL_ERROR,
        "the worker failed to answer; an increment it carried may or may not have been"
        " applied: send it again with the same key or session and n",
    )
    return HttpResponse(500, message.encode() + b"\n", [("Content-Type", "application/json")])


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def closing_response(status: int, code: str, message: str, retry_after: bool = False) -> bytes:
    """A whole response that ends its connection, for refusals made before any parsing."""
    body = error_message(code, message).encode()
    retry = b"Retry-After: 1\r\n" if retry_after else b""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (status, _reason(status), retry, len(body), body)
    )
