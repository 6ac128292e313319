"""A load test run as N shards (``--shard I/N``), judged as one run (``loadtest merge``).

Each shard takes every N-th counter from I on, and those counters' clients
(``plan.shard_clients``), so no two shards touch a counter. A shard's JSON
report carries its load processes' raw results; ``merge`` decodes those of
every shard and builds the report one run of all the clients would have made:
the same per-counter checks, latency histograms merged, totals summed.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ws_counter_client import connect, tls_context

from .plan import LoadOptions, PlanError
from .report import build_report
from .tally import AgentResult, decode_result

# ``--shard auto/N``: the index is claimed when the run starts (``claim_index``).
AUTO = -1


async def claim_index(options: LoadOptions, run: str) -> int:
    """This shard's index, handed out by the service itself: each shard of the run adds 1
    to the counter ``shards-RUN`` once, exactly once, and takes the seq of its ack less
    one. So replicas that know nothing of each other (compose --scale) get 0 to N-1."""
    assert options.shard is not None
    count = options.shard[1]
    client = connect(options.url, counter=f"shards-{run}", ssl=tls_context(options.ca_file))
    async with client as claims:
        ack = await claims.increment(1)
    index = (ack.seq or 0) - 1
    if not 0 <= index < count:
        raise PlanError(
            f"--shard-run {run} has handed out all {count} shards already (this would be"
            f" shard {index}): start every run with a new --shard-run"
        )
    return index


class MergeError(ValueError):
    """The files are not the shards of one run; the message says why."""


def options_of(parameters: dict[str, Any]) -> LoadOptions:
    """The options a report's parameters describe (unknown names ignored)."""
    known = {field.name for field in fields(LoadOptions)}
    values = {name: value for name, value in parameters.items() if name in known}
    if values.get("shard") is not None:
        values["shard"] = tuple(values["shard"])
    return LoadOptions(**values)


def merge_reports(paths: list[Path]) -> dict[str, Any]:
    """The report of the whole run whose shards wrote ``paths``."""
    reports = [json.loads(path.read_text()) for path in paths]
    shards = []
    for path, report in zip(paths, reports, strict=True):
        if "shard" not in report:
            raise MergeError(f"{path} is not a shard's report (run it with --shard I/N)")
        shards.append(report["shard"])
    counts = {shard["of"] for shard in shards}
    if len(counts) != 1:
        raise MergeError(f"the shards come from runs of different sizes: N = {sorted(counts)}")
    (count,) = counts
    indexes = sorted(shard["index"] for shard in shards)
    if indexes != list(range(count)):
        missing = sorted(set(range(count)) - set(indexes))
        twice = sorted({i for i in indexes if indexes.count(i) > 1})
        raise MergeError(f"shards of {count}: missing {missing}, given twice {twice}")
    plans = [_plan(report["parameters"]) for report in reports]
    if any(plan != plans[0] for plan in plans):
        raise MergeError("the shards ran different plans (clients, counters, rate, ...)")
    results: list[AgentResult] = []
    for shard in shards:
        for document in shard["results"]:
            results.append(replace(decode_result(document), index=len(results)))
    options = replace(options_of(reports[0]["parameters"]), shard=None)
    elapsed = max(report["elapsed_s"] for report in reports)
    merged = build_report(options, results, elapsed, secrets.token_hex(4))
    merged["merged_from"] = [str(path) for path in paths]
    return merged


def _plan(parameters: dict[str, Any]) -> dict[str, Any]:
    """A shard's parameters but for which shard it was, and where it ran from."""
    return {name: value for name, value in parameters.items() if name not in ("shard", "url")}
