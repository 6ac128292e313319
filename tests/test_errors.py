"""The store's error tree and the one table that maps redis-py's exceptions onto it:
whether an increment may have been applied is the whole point of the tree, so each
redis-py failure is checked against the class it must become, sent or not."""

from __future__ import annotations

import json

import pytest
from redis import exceptions as redis_errors

from ws_counter.worker.core.protocol import ErrorCode, Increment, failure_message
from ws_counter.worker.errors import (
    NotApplied,
    OutcomeUnknown,
    StoreError,
    StoreFull,
    StoreMisconfigured,
    StoreRejected,
    StoreUnavailable,
)
from ws_counter.worker.store.errors import NoReplicasError, map_redis_errors

pytestmark = pytest.mark.unit


def test_an_unknown_outcome_is_not_a_kind_of_not_applied() -> None:
    for kind in (StoreUnavailable, StoreFull, StoreMisconfigured, StoreRejected):
        assert issubclass(kind, NotApplied) and not issubclass(kind, OutcomeUnknown)
    assert issubclass(OutcomeUnknown, StoreError) and not issubclass(OutcomeUnknown, NotApplied)


# (redis-py's exception, whether the request had been sent, the worker's class)
MAPPINGS = [
    # A LOADING reply is a ConnectionError to redis-py, but Redis ran nothing.
    (redis_errors.BusyLoadingError("LOADING"), True, StoreUnavailable),
    (redis_errors.ConnectionError("reset"), True, OutcomeUnknown),
    (redis_errors.ConnectionError("refused"), False, StoreUnavailable),
    (redis_errors.TimeoutError("timed out"), True, OutcomeUnknown),
    (redis_errors.TimeoutError("timed out"), False, StoreUnavailable),
    (ConnectionResetError(104, "reset"), True, OutcomeUnknown),
    (ConnectionResetError(104, "reset"), False, StoreUnavailable),
    (redis_errors.OutOfMemoryError("OOM"), True, StoreFull),
    (redis_errors.ReadOnlyError("READONLY"), True, StoreUnavailable),
    (NoReplicasError("NOREPLICAS"), True, StoreUnavailable),
    (redis_errors.MasterDownError("MASTERDOWN"), True, StoreUnavailable),
    (redis_errors.TryAgainError("TRYAGAIN"), True, StoreUnavailable),
    (redis_errors.ClusterDownError("CLUSTERDOWN"), True, StoreUnavailable),
    (redis_errors.MovedError("3999 127.0.0.1:6381"), True, StoreUnavailable),
    (redis_errors.AskError("3999 127.0.0.1:6381"), True, StoreUnavailable),
    (redis_errors.ResponseError("ERR something"), True, StoreRejected),
    (redis_errors.AuthenticationError("WRONGPASS"), False, StoreMisconfigured),
    (redis_errors.NoPermissionError("NOPERM"), True, StoreMisconfigured),
    (redis_errors.DataError("bad"), True, StoreUnavailable),
]


@pytest.mark.parametrize(("raised", "sent", "expected"), MAPPINGS)
def test_each_redis_failure_becomes_the_class_that_says_what_happened(
    raised: BaseException, sent: bool, expected: type[StoreError]
) -> None:
    with pytest.raises(StoreError) as caught, map_redis_errors(sent=sent):
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised


# (failure, what the client's error message says)
MESSAGES = [
    (OutcomeUnknown("lost"), "may or may not have been applied; retry with the same id"),
    (StoreFull("full"), "out of memory and refuses writes; the increment was not applied"),
    (StoreUnavailable("down"), "the increment was not applied"),
    (StoreMisconfigured("wrong password"), "the increment was not applied"),
    (RuntimeError("bug"), "internal error; not applied"),
]


@pytest.mark.parametrize(("failure", "said"), MESSAGES)
def test_a_client_is_told_whether_its_increment_may_have_been_applied(
    failure: BaseException, said: str
) -> None:
    code, text = failure_message(Increment(1, "a1"), failure)
    document = json.loads(text)
    assert code == document["code"] == ErrorCode.UNAVAILABLE
    assert said in document["message"] and document["id"] == "a1"


def test_a_rejection_answers_with_its_own_code() -> None:
    code, text = failure_message(Increment(1, "a1"), StoreRejected("rejected", "no"))
    assert code == json.loads(text)["code"] == ErrorCode.REJECTED
