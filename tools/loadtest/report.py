"""Merge the processes' results, judge correctness and thresholds, write the report.

``judge_counter`` and ``fanout_latencies`` are pure: the tests feed them tables.
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from ws_counter.worker.core.state import CounterState

from .histograms import new_histogram
from .plan import LoadOptions
from .tally import AgentResult, encode_result

# A load process busier than this (of one core) was the run's limit.
LOAD_BOUND = 0.9

PERCENTILES = (50.0, 95.0, 99.0)
CDF_POINTS = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 99, 99.5, 99.9, 100)


@dataclass
class CounterVerdict:
    counter: str
    expected_total: int
    observed_total: int | None
    acked: int
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def judge_counter(
    counter: str,
    initial_states: list[CounterState],
    acks: dict[int, int],
    verified: CounterState | None,
    finals: list[CounterState],
    *,
    earlier: list[int] | None = None,
) -> CounterVerdict:
    """Check one counter: the final total is the start plus every acknowledged increment.

    ``initial_states`` are the snapshots clients got before
    the first increment; ``acks`` maps each acknowledged seq to its ``by``;
    ``verified`` is the state read on a fresh connection at the end; ``finals``
    are the states each client last saw. ``earlier`` holds the ``by`` of
    increments acknowledged without a seq (applied earlier, their outcome no
    longer kept): they count in the total, and exactly that many seqs after
    the start must be missing from ``acks``.
    """
    earlier = earlier or []
    errors: list[str] = []
    distinct = sorted(set(initial_states), key=lambda state: state.seq)
    if not distinct:
        return CounterVerdict(counter, 0, None, len(acks), [f"{counter}: no client connected"])
    if len(distinct) > 1:
        errors.append(
            f"{counter}: clients started from {len(distinct)} different states; "
            "was something else writing to the counter?"
        )
    start = distinct[0]
    expected = start.total + sum(acks.values()) + sum(earlier)
    applied = len(acks) + len(earlier)
    expected_seqs = range(start.seq + 1, start.seq + applied + 1)
    missing = len(set(expected_seqs) - set(acks))
    if not set(acks) <= set(expected_seqs) or missing != len(earlier):
        errors.append(
            f"{counter}: acknowledged seqs are not gap-free from {start.seq + 1}: "
            f"{missing} missing of {len(acks)}, {len(earlier)} acknowledged without a seq"
        )
    verdict = CounterVerdict(counter, expected, None, applied, errors)
    if verified is None:
        errors.append(f"{counter}: the final state could not be read")
    else:
        _judge_final(verdict, start, verified, finals)
    return verdict


def _judge_final(
    verdict: CounterVerdict,
    start: CounterState,
    verified: CounterState,
    finals: list[CounterState],
) -> None:
    """Check the state read at the end against the start and what was acknowledged."""
    counter, expected, applied = verdict.counter, verdict.expected_total, verdict.acked
    epoch, seq0, total0 = start.epoch, start.seq, start.total
    final_epoch, final_seq, observed = verified.epoch, verified.seq, verified.total
    verdict.observed_total = observed
    # A new epoch alone is no error: a failover that loses only states nobody
    # had acknowledged gets one, and the totals still add up. With totals off,
    # it says why.
    changed = f"the epoch changed from {epoch} to {final_epoch}"
    if final_epoch != epoch:
        verdict.notes.append(f"{counter}: {changed}")
    if observed != expected:
        verdict.errors.append(
            f"{counter}: final total {observed} but start {total0} plus acknowledged "
            f"increments is {expected} (off by {observed - expected})"
            + (f"; {changed}: history was lost" if final_epoch != epoch else "")
        )
    if final_seq != seq0 + applied:
        verdict.errors.append(
            f"{counter}: final seq {final_seq} but {applied} increments were "
            f"acknowledged after seq {seq0}"
        )
    behind = sum(1 for state in finals if state != verified)
    if behind:
        verdict.errors.append(f"{counter}: {behind} clients did not end at the final state")


def fanout_latencies(
    acks: dict[int, float], reached_by_process: list[dict[int, float]]
) -> tuple[list[float], int]:
    """Seconds from each acknowledged increment's send until every client (of every
    process) held that seq or a later one.

    Returns the latencies and how many acknowledged seqs some process never reached.
    """
    latencies = []
    unreached = 0
    for seq, sent_at in acks.items():
        times = [reached.get(seq) for reached in reached_by_process]
        if any(time is None for time in times):
            unreached += 1
            continue
        latencies.append(max(0.0, max(t for t in times if t is not None) - sent_at))
    return latencies, unreached


def summarize(histogram: HdrHistogram) -> dict[str, float | int]:
    if histogram.get_total_count() == 0:
        return {"count": 0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    summary: dict[str, float | int] = {"count": histogram.get_total_count()}
    for percentile in PERCENTILES:
        summary[f"p{percentile:g}"] = histogram.get_value_at_percentile(percentile) / 1000
    summary["max"] = histogram.get_max_value() / 1000
    summary["mean"] = round(histogram.get_mean_value() / 1000, 3)
    return summary


def cdf(histogram: HdrHistogram) -> list[tuple[float, float]]:
    if histogram.get_total_count() == 0:
        return []
    return [(p, histogram.get_value_at_percentile(p) / 1000) for p in CDF_POINTS]


def merge_histograms(encoded: list[bytes]) -> HdrHistogram:
    merged = new_histogram()
    for blob in encoded:
        merged.add(HdrHistogram.decode(blob))
    return merged


def _judge_merged(
    counter: str, results: list[AgentResult]
) -> tuple[CounterVerdict, list[float], int]:
    """One counter judged on every process's results, with its fan-out latencies and how
    many acknowledged seqs some process never reached."""
    acks: dict[int, tuple[int, float]] = {}
    for r in results:
        acks.update(r.acks.get(counter, {}))
    verified = [r.verified[counter] for r in results if counter in r.verified]
    verdict = judge_counter(
        counter,
        [state for r in results for c, state in r.initial_states if c == counter],
        {seq: by for seq, (by, _) in acks.items()},
        max(verified, key=lambda state: state.seq) if verified else None,
        [state for r in results for c, state in r.final if c == counter],
        earlier=[by for r in results for by in r.earlier.get(counter, [])],
    )
    latencies, unreached = fanout_latencies(
        {seq: at for seq, (_, at) in acks.items()},
        [r.reached[counter] for r in results if counter in r.reached],
    )
    return verdict, latencies, unreached


def _judge_all(
    results: list[AgentResult],
) -> tuple[list[CounterVerdict], HdrHistogram, list[str], int]:
    """Every counter's verdict, the merged fan-out histogram, every error, and how often
    a client saw seq go down."""
    fanout = new_histogram()
    errors = [error for r in results for error in r.errors]
    verdicts = []
    unreached_total = 0
    for counter in sorted({counter for r in results for counter in r.reached}):
        verdict, latencies, unreached = _judge_merged(counter, results)
        verdicts.append(verdict)
        unreached_total += unreached
        for latency in latencies:
            fanout.record_value(max(1, int(latency * 1e6)))
        errors.extend(verdict.errors)
    regressions = sum(r.regressions for r in results)
    if regressions:
        errors.append(f"clients saw seq go down {regressions} times within an epoch")
    if unreached_total:
        errors.append(f"{unreached_total} acknowledged seqs never reached every client")
    return verdicts, fanout, errors, regressions


def _codes(results: list[AgentResult]) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Failed handshakes by reason, close codes and error codes, over every process."""
    failed_connects: Counter[str] = Counter()
    close_codes: Counter[str] = Counter()
    error_codes: Counter[str] = Counter()
    for r in results:
        failed_connects.update(r.failed_connects)
        close_codes.update({str(code): n for code, n in r.close_codes.items()})
        error_codes.update(r.error_codes)
    return failed_connects, close_codes, error_codes


def build_report(
    options: LoadOptions, results: list[AgentResult], elapsed: float, run_id: str
) -> dict[str, Any]:
    """The run's report: the document --json writes and the summary prints."""
    connect = merge_histograms([r.connect_us for r in results])
    ack = merge_histograms([r.ack_us for r in results])
    verdicts, fanout, errors, regressions = _judge_all(results)
    correct = not errors
    failed_connects, close_codes, error_codes = _codes(results)
    first_send = min((r.first_send for r in results if r.first_send), default=None)
    last_ack = max((r.last_ack for r in results if r.last_ack), default=None)
    active = (last_ack - first_send) if first_send and last_ack and last_ack > first_send else 0
    acked = sum(v.acked for v in verdicts)
    frames = sum(r.frames for r in results)
    report: dict[str, Any] = {
        "run_id": run_id,
        "parameters": options.as_dict(),
        "machine": machine(),
        "elapsed_s": round(elapsed, 3),
        "clients_connected": sum(r.connected for r in results),
        "failed_connects": sum(failed_connects.values()),
        "failed_connect_reasons": dict(failed_connects),
        "connect_ms": summarize(connect),
        "ack_ms": summarize(ack),
        "fanout_ms": summarize(fanout),
        "increments_sent": sum(r.sent for r in results),
        "increments_acked": acked,
        "duplicate_acks": sum(r.duplicates for r in results),
        "reconnects": sum(r.reconnects for r in results),
        # The most connections made within any one second: at the start, and again.
        "connects_per_s_peak": peak_per_second([t for r in results for t in r.connected_at]),
        "reconnects_per_s_peak": peak_per_second([t for r in results for t in r.reconnected_at]),
        "expected_total": sum(v.expected_total for v in verdicts),
        "observed_total": sum(v.observed_total or 0 for v in verdicts),
        "counters": {
            v.counter: {
                "expected_total": v.expected_total,
                "observed_total": v.observed_total,
                "increments_acked": v.acked,
            }
            for v in verdicts
        },
        "throughput": {
            "increments_per_s": round(acked / active, 1) if active else 0.0,
            "frames_per_s": round(frames / active, 1) if active else 0.0,
            "active_s": round(active, 3),
        },
        "frames_received": frames,
        "close_codes": dict(close_codes),
        "error_codes": dict(error_codes),
        "seq_regressions": regressions,
        "epoch_changes_seen": sum(r.epoch_changes for r in results),
        "correct": correct,
        "errors": errors,
        "notes": [note for v in verdicts for note in v.notes],
        "cdf_ms": {"ack": cdf(ack), "fanout": cdf(fanout), "connect": cdf(connect)},
    }
    busy = [r.cpu_busy for r in results]
    report["load_generator"] = {
        "cpu_busy": busy,
        # Over 90% of a core: the figures describe the load generator, not the server.
        "saturated": bool(busy) and max(busy) > LOAD_BOUND,
    }
    if options.shard is not None:
        index, count = options.shard
        report["shard"] = {
            "index": index,
            "of": count,
            "results": [encode_result(r) for r in results],
        }
    report["thresholds"] = check_thresholds(options, report)
    report["passed"] = correct and all(t["ok"] for t in report["thresholds"].values())
    return report


def check_thresholds(options: LoadOptions, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    thresholds: dict[str, dict[str, Any]] = {}
    if options.max_p99_fanout_ms is not None:
        value = report["fanout_ms"]["p99"]
        thresholds["max_p99_fanout_ms"] = {
            "limit": options.max_p99_fanout_ms,
            "value": value,
            "ok": value <= options.max_p99_fanout_ms,
        }
    if options.max_failed_connects is not None:
        value = report["failed_connects"]
        thresholds["max_failed_connects"] = {
            "limit": options.max_failed_connects,
            "value": value,
            "ok": value <= options.max_failed_connects,
        }
    return thresholds


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def peak_per_second(times: list[float]) -> int:
    """The most of ``times`` (seconds) within any window of one second."""
    ordered = sorted(times)
    peak, first = 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak
