"""A history's verdict, in the manner of Jepsen's counter checker; pure, tested with tables.

Rules, each a line of the verdict:

* **Bounds.** With A the sum of acknowledged increments and U those whose
  outcome is unknown, the final total lies in [start + A + ΣU⁻, start + A +
  ΣU⁺] (the negative and the positive unknown ones). Below: acknowledged
  increments were lost. Above: something was applied twice (or applied that
  was refused).
* **Exact.** Without unknown outcomes (sessions resend until answered) the
  final total is start + A exactly.
* **No seq twice.** No (epoch, seq) is acknowledged for two increments.
* **Monotonic.** Each client's totals never go back within an epoch.
* **Convergence.** Every client's last total is the final state.

Figures: how many increments were acknowledged, refused and unknown; how much
was lost or doubled; the longest time without an acknowledgement while
increments were outstanding; and, after the last heal, how long until every
client held the final state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ws_counter.worker.core.state import CounterState

from .history import History, Outcome


@dataclass
class Verdict:
    acked: int = 0
    refused: int = 0
    unknown: int = 0
    lost: int = 0
    doubled: int = 0
    longest_without_ack: float = 0.0
    acks_after_heal: float | None = None
    converged_after_heal: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors


def check(history: History) -> Verdict:
    """Judge one run's history by the rules above."""
    verdict = Verdict()
    ops = history.ops
    verdict.acked = sum(op.outcome is Outcome.ACKED for op in ops)
    verdict.refused = sum(op.outcome is Outcome.REFUSED for op in ops)
    verdict.unknown = sum(op.outcome is Outcome.UNKNOWN for op in ops)
    _check_bounds(history, verdict)
    _check_seqs(history, verdict)
    _check_clients(history, verdict)
    verdict.longest_without_ack = longest_without_ack(history)
    verdict.acks_after_heal = acks_after_heal(history)
    verdict.converged_after_heal = converged_after_heal(history)
    return verdict


def _check_bounds(history: History, verdict: Verdict) -> None:
    if history.final is None:
        verdict.errors.append("the final state could not be read")
        return
    acked = sum(op.by for op in history.ops if op.outcome is Outcome.ACKED)
    unknown = [op.by for op in history.ops if op.outcome is Outcome.UNKNOWN]
    low = history.start.total + acked + sum(by for by in unknown if by < 0)
    high = history.start.total + acked + sum(by for by in unknown if by > 0)
    final = history.final.total
    if final < low:
        verdict.lost = low - final
        verdict.errors.append(f"final total {final} below {low}: {low - final} acknowledged lost")
    elif final > high:
        verdict.doubled = final - high
        verdict.errors.append(f"final total {final} above {high}: {final - high} applied twice")


def _check_seqs(history: History, verdict: Verdict) -> None:
    owners: dict[tuple[str, int], int] = {}
    for index, op in enumerate(history.ops):
        if op.outcome is not Outcome.ACKED or op.state is None:
            continue
        key = (op.state.epoch, op.state.seq)
        if owners.setdefault(key, index) != index:
            verdict.errors.append(f"seq {key[1]} of epoch {key[0]} acknowledged twice")


def _check_clients(history: History, verdict: Verdict) -> None:
    last: dict[int, CounterState] = {}
    for seen in sorted(history.seen, key=lambda s: s.at):
        before = last.get(seen.client)
        if before is not None and before.epoch == seen.state.epoch and seen.state.seq < before.seq:
            verdict.errors.append(
                f"client {seen.client} saw seq {seen.state.seq} after {before.seq}"
                f" in epoch {before.epoch}"
            )
        last[seen.client] = seen.state
    if history.final is None:
        return
    behind = sorted(client for client, state in last.items() if state != history.final)
    if behind:
        verdict.errors.append(f"{len(behind)} clients did not end at the final state")


def longest_without_ack(history: History) -> float:
    """The longest stretch, while some increment was outstanding, with no acknowledgement."""
    acks = sorted(
        op.answered_at
        for op in history.ops
        if op.answered_at is not None and op.outcome is Outcome.ACKED
    )
    sends = sorted(op.sent_at for op in history.ops)
    if not sends:
        return 0.0
    marks = [sends[0], *acks]
    longest = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)
    # An outstanding stretch at the end: from the last ack to the end of sending.
    open_after = [op.sent_at for op in history.ops if op.outcome is not Outcome.ACKED]
    if open_after and marks[-1] < max(open_after):
        longest = max(longest, history.ended - marks[-1])
    return longest


def acks_after_heal(history: History) -> float | None:
    """Seconds from the last heal to the first acknowledgement after it: about 0 when
    acknowledgements went on through the fault (None: none came after the heal)."""
    if not history.windows:
        return None
    heal = max(window.end for window in history.windows)
    after = [op.answered_at for op in history.ops
             if op.outcome is Outcome.ACKED and op.answered_at is not None
             and op.answered_at >= heal]  # fmt: skip
    return min(after) - heal if after else None


def converged_after_heal(history: History) -> float | None:
    """Seconds from the last heal (or the last acknowledgement, if later: increments go on
    after the heal) until every client held the final state (None: some never did)."""
    if history.final is None or not history.windows:
        return None
    acks = [op.answered_at for op in history.ops if op.outcome is Outcome.ACKED]
    heal = max([window.end for window in history.windows] + [at for at in acks if at])
    reached: dict[int, float] = {}
    clients = {seen.client for seen in history.seen}
    for seen in sorted(history.seen, key=lambda s: s.at):
        if seen.state == history.final:
            reached.setdefault(seen.client, seen.at)
    if set(reached) != clients:
        return None
    return max(0.0, max(reached.values()) - heal)
