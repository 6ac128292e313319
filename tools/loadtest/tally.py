"""What one load-generator process counts while it runs, and the result it sends its parent.

``Tally`` is filled by the process's clients; ``Tally.result`` freezes it into
an ``AgentResult``, which crosses the pipe (pickled) to the parent, where
``report.build_report`` merges the results of every process.
"""

from __future__ import annotations

import base64
import collections
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hdrh.histogram import HdrHistogram

from ws_counter.worker.core.state import CounterState
from ws_counter_client.results import Ack

from .coverage import Coverage
from .histograms import new_histogram

# A counter's name and a state of it that a client saw.
Seen = tuple[str, CounterState]


@dataclass(frozen=True, slots=True)
class AgentResult:
    """One process's share of a run; histograms as HdrHistogram's encoding."""

    index: int
    connect_us: bytes
    ack_us: bytes
    failed_connects: dict[str, int]
    close_codes: dict[int, int]
    error_codes: dict[str, int]
    errors: list[str]
    # Per counter: each acknowledged seq with its ``by`` and when it was first sent.
    acks: dict[str, dict[int, tuple[int, float]]]
    # Per counter: the ``by`` of increments acknowledged as applied earlier, without a seq.
    earlier: dict[str, list[int]]
    # Per counter: when this process's clients had all passed each seq.
    reached: dict[str, dict[int, float]]
    # What clients saw first (each distinct state once), and last (one per client).
    initial_states: list[Seen]
    final: list[Seen]
    verified: dict[str, CounterState]
    regressions: int
    epoch_changes: int
    duplicates: int
    reconnects: int
    # When (time.time()) each first connection and each reconnection was made.
    connected_at: list[float]
    reconnected_at: list[float]
    frames: int
    sent: int
    acked: int
    connected: int
    first_send: float | None
    last_ack: float | None
    # The process's CPU time over the wall time while it sent: 1.0 is a whole core.
    cpu_busy: float = 0.0


@dataclass
class Tally:
    """The running counts of one process."""

    counters: list[str]
    connect_us: HdrHistogram = field(default_factory=new_histogram)
    ack_us: HdrHistogram = field(default_factory=new_histogram)
    failed_connects: collections.Counter[str] = field(default_factory=collections.Counter)
    close_codes: collections.Counter[int] = field(default_factory=collections.Counter)
    error_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    acks: dict[str, dict[int, tuple[int, float]]] = field(
        default_factory=lambda: collections.defaultdict(dict)
    )
    earlier: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    coverage: dict[str, Coverage] = field(default_factory=dict)
    regressions: int = 0
    epoch_changes: int = 0
    duplicates: int = 0
    reconnects: int = 0
    connected_at: list[float] = field(default_factory=list)
    reconnected_at: list[float] = field(default_factory=list)
    frames: int = 0
    sent: int = 0
    acked: int = 0
    connected: int = 0
    first_send: float | None = None
    last_ack: float | None = None

    def __post_init__(self) -> None:
        self.coverage = {counter: Coverage() for counter in self.counters}

    def record_ack(self, counter: str, ack: Ack, by: int, sent_at: float, now: float) -> None:
        """Keep each acknowledged seq with its ``by`` and when it was first sent.

        Fan-out latency runs from that send, as a person sees it, until every
        client holds the seq or a later one. An increment acknowledged without
        a seq (applied earlier, its outcome no longer kept) still counts in the
        total; the report checks that exactly that many seqs are unaccounted for.
        """
        self.acked += 1
        self.last_ack = now
        self.duplicates += ack.duplicate
        seq = ack.seq
        if seq is None:
            self.earlier[counter].append(by)
            return
        previous = self.acks[counter].get(seq)
        if previous is not None and previous[0] != by:
            self.errors.append(f"seq {seq} of {counter} acknowledged for two different increments")
        self.acks[counter].setdefault(seq, (by, sent_at))

    def counts(self) -> dict[str, int]:
        """The progress figures the parent shows while the run lasts."""
        return {
            "connected": self.connected,
            "failed": sum(self.failed_connects.values()),
            "sent": self.sent,
            "acked": self.acked,
            "frames": self.frames,
            "reconnects": self.reconnects,
        }


def encode_result(result: AgentResult) -> dict[str, Any]:
    """``result`` as JSON: histograms in base64, integer keys as text."""
    document = asdict(result)
    for name in ("connect_us", "ack_us"):
        document[name] = base64.b64encode(document[name]).decode("ascii")
    return document


def decode_result(document: dict[str, Any]) -> AgentResult:
    """The inverse of ``encode_result``."""
    values = dict(document)
    for name in ("connect_us", "ack_us"):
        values[name] = base64.b64decode(values[name])
    values["close_codes"] = {int(code): n for code, n in values["close_codes"].items()}
    values["acks"] = {
        counter: {int(seq): (by, sent) for seq, (by, sent) in acks.items()}
        for counter, acks in values["acks"].items()
    }
    values["reached"] = {
        counter: {int(seq): at for seq, at in reached.items()}
        for counter, reached in values["reached"].items()
    }
    for name in ("initial_states", "final"):
        values[name] = [(counter, _state(state)) for counter, state in values[name]]
    values["verified"] = {counter: _state(state) for counter, state in values["verified"].items()}
    known = {field.name for field in fields(AgentResult)}
    return AgentResult(**{name: value for name, value in values.items() if name in known})


def _state(document: dict[str, Any]) -> CounterState:
    return CounterState(document["epoch"], document["seq"], document["total"])
