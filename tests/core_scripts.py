"""The client core's rules as a table of scripts: events in, actions out.

Each script is replayed on a fresh core with session ``abcdefgh`` (or ids
``p-1``, ``p-2``, ...), ``SCRIPT_POLICY`` and jitter that always picks the
largest delay. Events and actions are plain JSON, so that the Python core
(tests/test_client_core.py) and the JavaScript module (tests/test_client_js.py)
are held to the same rows:

events:  ["connect"] ["receive", text] ["lose", status, reason] ["fire", timer]
         ["ask", by, ticket] ["close"]
actions: ["send", [frames]] ["resolve", ticket, seq, total, duplicate] ["reject", ticket,
         error class, code or status] ["show", total, seq, epoch, missed] ["regress", seq]
         ["note", code] ["arm", timer, delay] ["reconnect", delay] ["stop", error class]
"""

from __future__ import annotations

import json
from typing import Any

SESSION = "abcdefgh"
# backoff (1 s, 8 s), two in flight, three resends, two reconnects.
SCRIPT_POLICY = {"backoff": [1, 8], "max_in_flight": 2, "max_resends": 3, "max_reconnects": 2}


def frame(n: int, by: int = 5) -> str:
    return json.dumps({"op": "incr", "by": by, "session": SESSION, "n": n}, separators=(",", ":"))


def id_frame(number: int, by: int = 5) -> str:
    return json.dumps({"op": "incr", "by": by, "id": f"p-{number}"}, separators=(",", ":"))


def ack(n: int, seq: int, total: int, epoch: str = "e", **more: object) -> str:
    return json.dumps(
        {"type": "ack", "session": SESSION, "n": n, "total": total, "seq": seq, "epoch": epoch}
        | more
    )


def total(seq: int, total: int, epoch: str = "e", counter: str = "c") -> str:
    return json.dumps(
        {"type": "total", "counter": counter, "total": total, "seq": seq, "epoch": epoch}
    )


def error(code: str, n: int | None = None, **more: object) -> str:
    echo = {} if n is None else {"session": SESSION, "n": n}
    return json.dumps({"type": "error", "code": code, "message": "m", **echo, **more})


EARLIER = json.dumps(
    {"type": "ack", "session": SESSION, "n": 1, "duplicate": True, "message": "applied earlier"}
)
BIG = 2**63 - 1

Row = tuple[str, str, list[Any], list[Any]]

# (name, book, events, actions)
SCRIPTS: list[Row] = [
    (
        "an increment asked while connected is sent and resolved by its ack",
        "session",
        [["connect"], ["ask", 5, "t1"], ["receive", ack(1, 1, 5)]],
        [["send", [frame(1)]], ["show", "5", "1", "e", False], ["resolve", "t1", "1", "5", False]],
    ),
    (
        "an increment asked while disconnected is sent when the connection opens",
        "session",
        [["ask", 5, "t1"], ["connect"]],
        [["send", [frame(1)]]],
    ),
    (
        "past the most in flight an increment waits for an answer to make room",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["ask", 5, "t2"],
            ["ask", 5, "t3"],
            ["receive", ack(1, 1, 5)],
        ],
        [
            ["send", [frame(1)]],
            ["send", [frame(2)]],
            ["show", "5", "1", "e", False],
            ["resolve", "t1", "1", "5", False],
            ["send", [frame(3)]],
        ],
    ),
    (
        "totals: news shown, a repeat ignored, an older one a regression, a new epoch news",
        "session",
        [
            ["receive", total(2, 7)],
            ["receive", total(2, 7)],
            ["receive", total(1, 5)],
            ["receive", total(1, 5, epoch="f")],
            ["receive", total(3, BIG, epoch="f")],
        ],
        [
            ["show", "7", "2", "e", False],
            ["regress", "1"],
            ["show", "5", "1", "f", False],
            ["show", str(BIG), "3", "f", False],
        ],
    ),
    (
        "an ack older than the total already shown resolves without showing it",
        "session",
        [["connect"], ["ask", 5, "t1"], ["receive", total(4, 20)], ["receive", ack(1, 3, 15)]],
        [
            ["send", [frame(1)]],
            ["show", "20", "4", "e", False],
            ["resolve", "t1", "3", "15", False],
        ],
    ),
    (
        "an ack without a seq (applied earlier) resolves as a duplicate with no total",
        "session",
        [["connect"], ["ask", 5, "t1"], ["receive", EARLIER]],
        [["send", [frame(1)]], ["resolve", "t1", None, None, True]],
    ),
    (
        "a second answer to the same increment, or one for another session, leads to nothing",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["receive", ack(1, 1, 5, duplicate=True)],
            ["receive", ack(1, 1, 5)],
            ["receive", ack(1, 1, 5).replace(SESSION, "someone-else")],
        ],
        [["send", [frame(1)]], ["show", "5", "1", "e", False], ["resolve", "t1", "1", "5", True]],
    ),
    *[
        (
            f"{code} fails the increment for good",
            "session",
            [["connect"], ["ask", 5, "t1"], ["receive", error(code, 1)]],
            [["send", [frame(1)]], ["note", code], ["reject", "t1", "IncrementRefused", code]],
        )
        for code in (
            "forbidden",
            "overflow",
            "rejected",
            "invalid_message",
            "unknown_op",
            "missing_by",
            "invalid_by",
            "out_of_range",
            "invalid_id",
            "invalid_session",
            "invalid_n",
            "binary_not_supported",
        )
    ],
    *[
        (
            f"{code} sends the increment again after a backoff",
            "session",
            [["connect"], ["ask", 5, "t1"], ["receive", error(code, 1)], ["fire", "resend"]],
            [["send", [frame(1)]], ["note", code], ["arm", "resend", 2], ["send", [frame(1)]]],
        )
        for code in ("unavailable", "rate_limited")
    ],
    (
        "out_of_order resends from the number the worker expected",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["ask", 5, "t2"],
            ["receive", error("out_of_order", 2, expected=1)],
            ["fire", "resend"],
        ],
        [
            ["send", [frame(1)]],
            ["send", [frame(2)]],
            ["note", "out_of_order"],
            ["arm", "resend", 2],
            ["send", [frame(1), frame(2)]],
        ],
    ),
    (
        "a burst of refusals arms one resend, from the lowest refused",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["ask", 5, "t2"],
            ["receive", error("rate_limited", 2)],
            ["receive", error("rate_limited", 1)],
            ["fire", "resend"],
        ],
        [
            ["send", [frame(1)]],
            ["send", [frame(2)]],
            ["note", "rate_limited"],
            ["arm", "resend", 2],
            ["note", "rate_limited"],
            ["send", [frame(1), frame(2)]],
        ],
    ),
    (
        "an increment refused more often than max_resends fails",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            *[["receive", error("unavailable", 1)], ["fire", "resend"]] * 3,
            ["receive", error("unavailable", 1)],
        ],
        [
            ["send", [frame(1)]],
            *[
                step
                for delay in (2, 4, 8)
                for step in (
                    ["note", "unavailable"],
                    ["arm", "resend", delay],
                    ["send", [frame(1)]],
                )
            ],
            ["note", "unavailable"],
            ["reject", "t1", "IncrementRefused", "unavailable"],
        ],
    ),
    (
        "a forgotten session ends what is outstanding as unknown and starts anew",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["ask", 5, "t2"],
            ["receive", ack(1, 1, 5)],
            ["receive", error("out_of_order", 2, expected=1)],
        ],
        [
            ["send", [frame(1)]],
            ["send", [frame(2)]],
            ["show", "5", "1", "e", False],
            ["resolve", "t1", "1", "5", False],
            ["note", "out_of_order"],
            ["reject", "t2", "IncrementUnknown", None],
        ],
    ),
    (
        "refused for good after a second send: unknown (an earlier one may have applied it)",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["lose", None, ""],
            ["connect"],
            ["receive", error("rejected", 1)],
            ["ask", 5, "t2"],
        ],
        [
            ["send", [frame(1)]],
            ["reconnect", 1],
            ["send", [frame(1)]],
            ["note", "rejected"],
            ["reject", "t1", "IncrementUnknown", None],
            # Its number stays used: the next increment takes the one after it.
            ["send", [frame(2)]],
        ],
    ),
    (
        "an error that answers no increment is only noted",
        "session",
        [["receive", error("invalid_message")], ["receive", error("rate_limited", 9)]],
        [["note", "invalid_message"], ["note", "rate_limited"]],
    ),
    (
        "a server message that cannot be read is noted as malformed",
        "session",
        [
            ["receive", "not json"],
            ["receive", "[1]"],
            ["receive", '{"type": "surprise"}'],
            ["receive", '{"type": "total", "total": "5", "seq": 1, "epoch": "e"}'],
        ],
        [["note", "malformed_message"]] * 4,
    ),
    (
        "a refused handshake that a retry cannot change stops the client",
        "session",
        [["ask", 5, "t1"], ["lose", 403, "no access"], ["ask", 5, "t2"]],
        [
            ["reject", "t1", "ConnectionRefused", 403],
            ["stop", "ConnectionRefused"],
            ["reject", "t2", "ClientClosed", None],
        ],
    ),
    (
        "a lost connection is made again with backoff, resending what is outstanding",
        "session",
        [["connect"], ["ask", 5, "t1"], ["lose", 503, ""], ["lose", None, ""], ["connect"]],
        [["send", [frame(1)]], ["reconnect", 1], ["reconnect", 2], ["send", [frame(1)]]],
    ),
    (
        "past max_reconnects the client gives up",
        "session",
        [["ask", 5, "t1"], ["lose", None, ""], ["lose", None, ""], ["lose", None, ""]],
        [
            ["reconnect", 1],
            ["reconnect", 2],
            ["reject", "t1", "CounterClientError", None],
            ["stop", "CounterClientError"],
        ],
    ),
    (
        "a resend due while disconnected waits for the reconnect, which sends everything",
        "session",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["receive", error("unavailable", 1)],
            ["lose", None, ""],
            ["fire", "resend"],
            ["connect"],
        ],
        [
            ["send", [frame(1)]],
            ["note", "unavailable"],
            ["arm", "resend", 2],
            ["reconnect", 1],
            ["send", [frame(1)]],
        ],
    ),
    (
        "closing ends every increment asked for, sent or waiting",
        "session",
        [["connect"], ["ask", 5, "t1"], ["ask", 5, "t2"], ["ask", 5, "t3"], ["close"], ["close"]],
        [
            ["send", [frame(1)]],
            ["send", [frame(2)]],
            ["reject", "t1", "ClientClosed", None],
            ["reject", "t2", "ClientClosed", None],
            ["reject", "t3", "ClientClosed", None],
            ["stop", None],
        ],
    ),
    (
        "ids: each increment its own id, resent alone and resolved by its id",
        "ids",
        [
            ["connect"],
            ["ask", 5, "t1"],
            ["ask", 7, "t2"],
            ["receive", error("rate_limited", id="p-2")],
            ["fire", "resend"],
            [
                "receive",
                json.dumps({"type": "ack", "id": "p-2", "total": 7, "seq": 1, "epoch": "e"}),
            ],
            ["receive", json.dumps({"type": "error", "code": "forbidden", "id": "p-1"})],
        ],
        [
            ["send", [id_frame(1)]],
            ["send", [id_frame(2, 7)]],
            ["note", "rate_limited"],
            ["arm", "resend", 2],
            ["send", [id_frame(2, 7)]],
            ["show", "7", "1", "e", False],
            ["resolve", "t2", "1", "7", False],
            ["note", "forbidden"],
            ["reject", "t1", "IncrementRefused", "forbidden"],
        ],
    ),
]
