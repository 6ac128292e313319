"""A client's increment, from its frame to its ack: refusals, the batcher, the reply."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..core.auth import Grant
from ..core.protocol import (
    ErrorCode,
    Increment,
    ack_message,
    applied_earlier_message,
    error_message,
    failure_message,
    parse_client_message,
    unavailable_reason,
)
from ..core.ratelimit import TokenBucket
from ..core.state import Applied, AppliedEarlier, Outcome
from ..errors import ClientError, StoreError, StoreFull
from .connection import CounterConnection
from .context import WorkerContext

log = logging.getLogger("ws_counter.worker")


@dataclass(frozen=True, slots=True)
class Reply:
    """What answers one increment: its text, and the error code (None for an ack)."""

    text: str
    code: str | None = None


class Increments:
    """Answers every increment, from a WebSocket frame or an HTTP POST, with one ack or error."""

    def __init__(self, worker: WorkerContext) -> None:
        self.worker = worker
        self.metrics = worker.metrics

    def on_message(self, client: CounterConnection, message: str | bytes) -> None:
        try:
            increment = parse_client_message(message)
        except ClientError as exc:
            client.send_text(self.invalid(exc).text)
            return
        refusal = self.refusal(client.counter, client.grant, client.bucket, increment)
        if refusal is not None:
            client.send_text(refusal.text)
            return
        future = self.submit(client.counter, increment)
        client.sent_increment()
        future.add_done_callback(lambda done: self._answer(client, increment, done))

    def _answer(
        self, client: CounterConnection, increment: Increment, future: asyncio.Future[Outcome]
    ) -> None:
        client.settled_increment()
        if not future.cancelled():
            client.send_text(self.reply(increment, future).text)

    def invalid(self, exc: ClientError) -> Reply:
        self.metrics.invalid.inc()
        return Reply(error_message(exc.code, exc.message, **exc.echo), exc.code)

    def submit(self, counter: str, increment: Increment) -> asyncio.Future[Outcome]:
        return self.worker.batcher.submit(counter, increment)

    def refusal(
        self, counter: str, grant: Grant, bucket: TokenBucket | None, increment: Increment
    ) -> Reply | None:
        """The error for an increment this client may not make now, if any."""
        worker = self.worker
        settings = worker.settings
        if not grant.incr:
            self.metrics.forbidden.inc()
            return _error(
                ErrorCode.FORBIDDEN,
                f"this token may read counter {counter} but not increment it",
                increment,
            )
        if bucket is not None and not bucket.take(time.monotonic()):
            self.metrics.rate_limited.inc()
            return _error(
                ErrorCode.RATE_LIMITED,
                f"more than {settings.rate_limit:g} increments per second on this"
                " connection; not applied, send it again later",
                increment,
            )
        reason = unavailable_reason(draining=worker.draining, redis_up=worker.redis_up)
        if reason is not None:
            self.metrics.failed.inc()
            return _error(
                ErrorCode.UNAVAILABLE, f"{reason}; the increment was not applied", increment
            )
        return None

    def reply(self, increment: Increment, future: asyncio.Future[Outcome]) -> Reply:
        """The ack or error for an increment whose outcome is known."""
        exc = future.exception()
        outcome = future.result() if exc is None else exc
        if isinstance(outcome, Applied):
            (self.metrics.duplicate if outcome.duplicate else self.metrics.applied).inc()
            return Reply(ack_message(increment, outcome))
        if isinstance(outcome, AppliedEarlier):
            self.metrics.duplicate.inc()
            window = self.worker.settings.session_window
            return Reply(applied_earlier_message(increment, window))
        self.metrics.failed.inc()
        if isinstance(outcome, StoreFull):
            self.metrics.redis_out_of_memory.inc()
        if not isinstance(outcome, StoreError):
            log.error("unexpected failure of an increment: %r", outcome)
        code, text = failure_message(increment, outcome)
        return Reply(text, code)


def _error(code: str, message: str, increment: Increment) -> Reply:
    return Reply(error_message(code, message, **increment.echo), code)
