"""The client core (ws_counter_client.core): every row of tests/core_scripts.py, replayed."""

from __future__ import annotations

from typing import Any

import pytest

from ws_counter_client.core import (
    Action,
    Arm,
    ClientCore,
    CloseAsked,
    Connected,
    Event,
    IncrementAsked,
    Lost,
    Note,
    Policy,
    Received,
    Reconnect,
    Regress,
    Reject,
    Resolve,
    Send,
    Show,
    Stop,
    Timer,
    TimerFired,
)
from ws_counter_client.results import ConnectionRefused, IncrementRefused
from ws_counter_client.rules import Book, Ids, Session

from .core_scripts import SCRIPT_POLICY, SCRIPTS, SESSION, Row

pytestmark = pytest.mark.unit


def new_core(book: str) -> ClientCore[str]:
    """A core as the scripts expect: fixed session or id prefix, the largest delay always."""
    books: dict[str, Book[str]] = {"session": Session(session=SESSION), "ids": Ids(prefix="p")}
    policy = Policy(
        backoff=tuple(SCRIPT_POLICY["backoff"]),  # type: ignore[arg-type]
        max_in_flight=SCRIPT_POLICY["max_in_flight"],  # type: ignore[arg-type]
        max_resends=SCRIPT_POLICY["max_resends"],  # type: ignore[arg-type]
        max_reconnects=SCRIPT_POLICY["max_reconnects"],  # type: ignore[arg-type]
    )
    return ClientCore("c", books[book], policy, uniform=lambda low, high: high)


def event_of(step: list[Any]) -> Event:
    kind, *args = step
    events: dict[str, Any] = {
        "connect": Connected,
        "receive": Received,
        "lose": lambda status, reason: Lost("lost", status, reason),
        "fire": lambda timer: TimerFired(Timer(timer)),
        "ask": IncrementAsked,
        "close": CloseAsked,
    }
    event: Event = events[kind](*args)
    return event


def describe(action: Action) -> list[Any]:  # noqa: PLR0911 (one return per kind of action)
    """An action as the scripts write it (and as the JavaScript test describes its own)."""
    match action:
        case Send(frames):
            return ["send", list(frames)]
        case Resolve(ticket, ack):
            seq, total = (None, None) if ack.seq is None else (str(ack.seq), str(ack.total))
            return ["resolve", ticket, seq, total, ack.duplicate]
        case Reject(ticket, error):
            detail = (
                error.code
                if isinstance(error, IncrementRefused)
                else error.status
                if isinstance(error, ConnectionRefused)
                else None
            )
            return ["reject", ticket, type(error).__name__, detail]
        case Show(total):
            return ["show", str(total.total), str(total.seq), total.epoch, total.missed]
        case Regress(total):
            return ["regress", str(total.seq)]
        case Note(code):
            return ["note", code]
        case Arm(timer, delay):
            return ["arm", str(timer), delay]
        case Reconnect(delay):
            return ["reconnect", delay]
        case Stop(error):
            return ["stop", None if error is None else type(error).__name__]
    raise AssertionError(action)


def replay(book: str, events: list[list[Any]]) -> list[list[Any]]:
    core = new_core(book)
    return [describe(action) for step in events for action in core.handle(event_of(step))]


@pytest.mark.parametrize("row", SCRIPTS, ids=[row[0] for row in SCRIPTS])
def test_script(row: Row) -> None:
    _, book, events, actions = row
    assert replay(book, events) == actions


def test_resume_point_and_unanswered_tickets() -> None:
    """The core resumes from the newest seq it has seen and lists every ticket not yet answered."""
    core = new_core("session")
    assert core.since is None
    core.handle(Received('{"type":"total","counter":"c","total":9,"seq":4,"epoch":"e"}'))
    for ticket in ("t1", "t2", "t3"):
        core.handle(IncrementAsked(1, ticket))
    assert core.since == 4
    assert core.tickets() == ["t1", "t2", "t3"]


@pytest.mark.parametrize("by", [2**63, -(2**63) - 1, True, 1.0, "5"])
def test_an_increment_outside_the_protocol_is_refused_before_it_is_numbered(by: Any) -> None:
    core = new_core("session")
    with pytest.raises(ValueError, match="signed 64-bit"):
        core.handle(IncrementAsked(by, "t"))
    assert core.tickets() == []
