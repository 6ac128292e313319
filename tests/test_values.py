"""The value types of the compiled modules cross processes and copies as in pure Python.

The load test's processes send states and outcomes to each other by pickle, and
mypyc's classes do not unpickle a frozen dataclass by themselves (it assigns
each field, which a frozen class refuses): so each type here is pickled, copied
and compared. tests/test_compiled.py runs the unit tests on the compiled build.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from ws_counter.worker.core.protocol import CounterRoute, Increment
from ws_counter.worker.core.state import APPLIED_EARLIER, Applied, CounterState
from ws_counter.worker.errors import StoreRejected

STATE = CounterState("e1", 3, 42, 1_700_000_000_000)
VALUES: list[object] = [
    STATE,
    CounterState("e1", 0, 0),
    Applied(STATE),
    Applied(STATE, duplicate=True),
    APPLIED_EARLIER,
    Increment(5),
    Increment(-2, id="abc"),
    Increment(1, session="session-1", n=7),
    CounterRoute("default"),
    CounterRoute("c", since=3, token="t"),
]


@pytest.mark.unit
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_each_value_survives_pickle_and_copy(value: object) -> None:
    for again in (pickle.loads(pickle.dumps(value)), copy.copy(value), copy.deepcopy(value)):
        assert type(again) is type(value)
        assert again == value
        assert repr(again) == repr(value)


@pytest.mark.unit
def test_a_state_keeps_its_publish_time_through_pickle() -> None:
    # published_ms is not compared, so equality alone would not show it lost.
    assert pickle.loads(pickle.dumps(STATE)).published_ms == STATE.published_ms


@pytest.mark.unit
def test_a_refusal_survives_pickle_with_its_code() -> None:
    refused = StoreRejected("out_of_order", "expected n=3", expected=3)
    again = pickle.loads(pickle.dumps(refused))
    assert (again.code, str(again), again.expected) == ("out_of_order", str(refused), 3)
