"""A client's increment, from its frame to its ack: refusals, the batcher, the reply."""

from __future__ import annotations

import asyncio
import logging
import time

from ..core.protocol import (
    ErrorCode,
    Increment,
    ack_message,
    applied_earlier_message,
    error_message,
    failure_message,
    parse_client_message,
)
from ..core.state import Applied, AppliedEarlier, Outcome
from ..errors import ClientError, StoreError, StoreFull
from .connection import Client
from .context import WorkerContext

log = logging.getLogger("ws_counter.worker")


class Increments:
    """Answers every frame a client sends with exactly one ack or error."""

    def __init__(self, worker: WorkerContext) -> None:
        self.worker = worker
        self.metrics = worker.metrics

    def on_message(self, client: Client, message: str | bytes) -> None:
        try:
            increment = parse_client_message(message)
        except ClientError as exc:
            self.metrics.invalid.inc()
            client.send_text(error_message(exc.code, exc.message, **exc.echo))
            return
        refusal = self._refusal(client, increment)
        if refusal is not None:
            client.send_text(refusal)
            return
        future = self.worker.batcher.submit(client.counter, increment)
        client.sent_increment()
        future.add_done_callback(lambda done: self._on_outcome(client, increment, done))

    def _refusal(self, client: Client, increment: Increment) -> str | None:
        """The error for an increment this client may not make now, if any."""
        worker = self.worker
        settings = worker.settings
        if not client.grant.incr:
            self.metrics.forbidden.inc()
            return error_message(
                ErrorCode.FORBIDDEN,
                f"this token may read counter {client.counter} but not increment it",
                **increment.echo,
            )
        if client.bucket is not None and not client.bucket.take(time.monotonic()):
            self.metrics.rate_limited.inc()
            return error_message(
                ErrorCode.RATE_LIMITED,
                f"more than {settings.rate_limit:g} increments per second on this"
                " connection; not applied, send it again later",
                **increment.echo,
            )
        if worker.draining or not worker.redis_up:
            self.metrics.failed.inc()
            reason = "worker is shutting down" if worker.draining else "Redis is unavailable"
            return error_message(
                ErrorCode.UNAVAILABLE, f"{reason}; the increment was not applied", **increment.echo
            )
        return None

    def _on_outcome(
        self, client: Client, increment: Increment, future: asyncio.Future[Outcome]
    ) -> None:
        client.settled_increment()
        if future.cancelled():
            return
        exc = future.exception()
        outcome = future.result() if exc is None else exc
        if isinstance(outcome, Applied):
            (self.metrics.duplicate if outcome.duplicate else self.metrics.applied).inc()
            client.send_text(ack_message(increment, outcome))
            return
        if isinstance(outcome, AppliedEarlier):
            self.metrics.duplicate.inc()
            client.send_text(
                applied_earlier_message(increment, self.worker.settings.session_window)
            )
            return
        self.metrics.failed.inc()
        if isinstance(outcome, StoreFull):
            self.metrics.redis_out_of_memory.inc()
        if not isinstance(outcome, StoreError):
            log.error("unexpected failure of an increment: %r", outcome)
        client.send_text(failure_message(increment, outcome))
