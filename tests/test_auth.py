"""Tokens and the rate limiter: pure logic, table tests."""

from __future__ import annotations

import time

import jwt
import pytest

from ws_counter.worker.core.auth import Grant, authorize, issue, token_from
from ws_counter.worker.core.ratelimit import TokenBucket
from ws_counter.worker.errors import AuthError

pytestmark = pytest.mark.unit

SECRET = "test-secret-not-for-production-use-0123456789"

GRANTS = [
    # (read claim, incr claim, counter, expected grant)
    (["*"], ["*"], "votes", Grant(read=True, incr=True)),
    (["votes"], [], "votes", Grant(read=True, incr=False)),
    ([], ["votes"], "votes", Grant(read=True, incr=True)),
    (["*"], ["votes"], "other", Grant(read=True, incr=False)),
    ("votes", "votes", "votes", Grant(read=True, incr=True)),
]


@pytest.mark.parametrize(("read", "incr", "counter", "grant"), GRANTS)
def test_claims_grant_read_and_incr(
    read: list[str], incr: list[str], counter: str, grant: Grant
) -> None:
    token = jwt.encode({"read": read, "incr": incr}, SECRET, algorithm="HS256")
    assert authorize(SECRET, token, counter) == grant


REFUSALS = [
    (None, 401, "required"),
    ("not-a-jwt", 401, "not valid"),
    (issue("another-secret-of-sufficient-length-123456", ["*"], ["*"]), 401, "not valid"),
    (issue(SECRET, ["*"], ["*"], expires_at=int(time.time()) - 60), 401, "expired"),
    (issue(SECRET, ["other"], []), 403, "does not allow"),
    (jwt.encode({"read": ["*"]}, SECRET * 2, algorithm="HS512"), 401, "not valid"),
    (jwt.encode({"read": ["*"]}, None, algorithm="none"), 401, "not valid"),
]


@pytest.mark.parametrize(("token", "status", "reason"), REFUSALS)
def test_bad_tokens_are_refused(token: str | None, status: int, reason: str) -> None:
    with pytest.raises(AuthError) as caught:
        authorize(SECRET, token, "votes")
    assert caught.value.status == status
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("query", "header", "token"),
    [
        ("abc", None, "abc"),
        (None, "Bearer xyz", "xyz"),
        (None, "bearer  xyz ", "xyz"),
        ("abc", "Bearer xyz", "abc"),
        (None, "Basic dXNlcg==", None),
        (None, "Bearer ", None),
        (None, None, None),
    ],
)
def test_token_comes_from_query_or_bearer_header(
    query: str | None, header: str | None, token: str | None
) -> None:
    assert token_from(query, header) == token


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True
    assert bucket.take(10.0) is True  # refills to the burst, not beyond
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]


def test_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=5.0)
    assert bucket.take(5.0) is True
    assert bucket.take(4.0) is False
