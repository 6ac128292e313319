"""The client core (ws_counter_client.core): every row of tests/core_scripts.py, replayed."""

from __future__ import annotations

from typing import Any

import pytest

from ws_counter_client import core
from ws_counter_client.results import ConnectionRefused, IncrementRefused
from ws_counter_client.rules import Book, Ids, Session

from .core_scripts import SCRIPT_POLICY, SCRIPTS, SESSION, Row

pytestmark = pytest.mark.unit


def new_core(book: str) -> core.ClientCore[str]:
    """A core as the scripts expect: fixed session or id prefix, the largest delay always."""
    books: dict[str, Book[str]] = {"session": Session(session=SESSION), "ids": Ids(prefix="p")}
    policy = core.Policy(
        backoff=tuple(SCRIPT_POLICY["backoff"]),  # type: ignore[arg-type]
        max_in_flight=SCRIPT_POLICY["max_in_flight"],  # type: ignore[arg-type]
        max_resends=SCRIPT_POLICY["max_resends"],  # type: ignore[arg-type]
        max_reconnects=SCRIPT_POLICY["max_reconnects"],  # type: ignore[arg-type]
    )
    return core.ClientCore("c", books[book], policy, uniform=lambda low, high: high)


def event_of(step: list[Any]) -> core.Event:
    kind, *args = step
    events: dict[str, Any] = {
        "connect": core.Connected,
        "receive": core.Received,
        "lose": lambda status, reason: core.Lost("lost", status, reason),
        "fire": lambda timer: core.TimerFired(core.Timer(timer)),
        "ask": core.IncrementAsked,
        "close": core.CloseAsked,
    }
    event: core.Event = events[kind](*args)
    return event


def describe(action: core.Action) -> list[Any]:  # noqa: PLR0911 (one return per kind of action)
    """An action as the scripts write it (and as the JavaScript test describes its own)."""
    match action:
        case core.Send(frames):
            return ["send", list(frames)]
        case core.Resolve(ticket, ack):
            seq, total = (None, None) if ack.seq is None else (str(ack.seq), str(ack.total))
            return ["resolve", ticket, seq, total, ack.duplicate]
        case core.Reject(ticket, error):
            detail = (
                error.code
                if isinstance(error, IncrementRefused)
                else error.status
                if isinstance(error, ConnectionRefused)
                else None
            )
            return ["reject", ticket, type(error).__name__, detail]
        case core.Show(total):
            return ["show", str(total.total), str(total.seq), total.epoch, total.missed]
        case core.Regress(total):
            return ["regress", str(total.seq)]
        case core.Note(code):
            return ["note", code]
        case core.Arm(timer, delay):
            return ["arm", str(timer), delay]
        case core.Reconnect(delay):
            return ["reconnect", delay]
        case core.Stop(error):
            return ["stop", None if error is None else type(error).__name__]
    raise AssertionError(action)


def replay(book: str, events: list[list[Any]]) -> list[list[Any]]:
    machine = new_core(book)
    return [describe(action) for step in events for action in machine.handle(event_of(step))]


@pytest.mark.parametrize("row", SCRIPTS, ids=[row[0] for row in SCRIPTS])
def test_script(row: Row) -> None:
    _, book, events, actions = row
    assert replay(book, events) == actions


def test_resume_point_and_unanswered_tickets() -> None:
    """The core resumes from the newest seq it has seen and lists every ticket not yet answered."""
    machine = new_core("session")
    assert machine.since is None
    machine.handle(core.Received('{"type":"total","counter":"c","total":9,"seq":4,"epoch":"e"}'))
    for ticket in ("t1", "t2", "t3"):
        machine.handle(core.IncrementAsked(1, ticket))
    assert machine.since == 4
    assert machine.tickets() == ["t1", "t2", "t3"]


@pytest.mark.parametrize("by", [2**63, -(2**63) - 1, True, 1.0, "5"])
def test_an_increment_outside_the_protocol_is_refused_before_it_is_numbered(by: Any) -> None:
    machine = new_core("session")
    with pytest.raises(ValueError, match=r"^by must be (an integer|within the signed 64-bit)"):
        machine.handle(core.IncrementAsked(by, "t"))
    assert machine.tickets() == []
