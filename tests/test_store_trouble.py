"""What the worker says when Redis goes away: the TLS hint only where it can be right."""

from __future__ import annotations

import pytest
from redis import exceptions as redis_errors

from ws_counter.worker.store.pubsub import Trouble

pytestmark = pytest.mark.unit


def reset() -> redis_errors.ConnectionError:
    exc = redis_errors.ConnectionError("Connection reset by peer")
    exc.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    return exc


def test_a_reset_before_any_connection_worked_suggests_a_tls_port() -> None:
    """A plain connection to a TLS port is reset: before anything worked, say so."""
    trouble = Trouble(plain=True)
    trouble.failed("subscription lost", reset())
    assert trouble.reason is not None and "set REDIS_TLS=true" in trouble.reason


def test_a_reset_after_the_subscription_worked_blames_no_tls_setting() -> None:
    """A node that crashed after serving (a killed cluster primary) is not a TLS port."""
    trouble = Trouble(plain=True)
    trouble.failed("subscription lost", reset())
    trouble.cleared()
    trouble.failed("subscription lost", reset())
    assert trouble.reason is not None and "TLS" not in trouble.reason, trouble.reason


def test_with_tls_on_a_reset_never_suggests_it() -> None:
    trouble = Trouble(plain=False)
    trouble.failed("subscription lost", reset())
    assert trouble.reason is not None and "TLS" not in trouble.reason
