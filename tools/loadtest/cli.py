"""``ws-counter loadtest URL``: orchestrate the load-generator processes and report."""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ws_counter.worker import runtime
from ws_counter.worker.core.protocol import is_valid_counter_name
from ws_counter_client import CounterClientError

from .agent import agent_main
from .plan import DEDUP_MODES, LoadOptions, PlanError, split, validate
from .plot import NEEDS_MATPLOTLIB, can_plot, plot_report
from .report import build_report, write_json
from .shards import AUTO, MergeError, claim_index, merge_reports

REFRESH_SECONDS = 0.25


class LoadTestFailed(RuntimeError):
    """A load-generator process failed; the run has no trustworthy result."""


def add_loadtest_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "loadtest",
        help="load-test a deployment: exact totals and latencies",
        description="Open C clients, send numbered increments, and check that every "
        "acknowledged increment is counted exactly once while measuring connect, ack "
        "and fan-out latency. Exit status 0 only when the totals are exact and every "
        "threshold holds. 'ws-counter loadtest merge A.json B.json ...' judges the reports "
        "of a run made as shards (--shard I/N) as one run.",
    )
    parser.add_argument(
        "url",
        help="the service's URL, e.g. ws://127.0.0.1:8080/ (wss://, and http(s):// for the same)",
    )
    parser.add_argument(
        "--ca",
        dest="ca_file",
        metavar="FILE",
        help="trust the CA certificates (PEM) in FILE for a wss:// URL (ws-counter cluster"
        " --tls prints its throwaway CA)",
    )
    _add_load_shape(parser)
    _add_checks_and_output(parser)


def _add_load_shape(parser: argparse.ArgumentParser) -> None:
    """Who sends what: clients, increments or a rate, counters, processes, dedup."""
    parser.add_argument("--clients", type=int, default=100, metavar="C", help="connections (100)")
    parser.add_argument(
        "--increments", type=int, metavar="M", help="increments per client, each awaited"
    )
    parser.add_argument("--rate", type=float, metavar="R", help="aggregate increments per second")
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="how long to send at --rate"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=1000.0,
        metavar="R",
        help="connections opened per second (1000)",
    )
    parser.add_argument(
        "--counter",
        metavar="NAME",
        help="counter to use (the URL's /counters/NAME, else default)",
    )
    parser.add_argument(
        "--counters",
        type=int,
        default=1,
        metavar="K",
        help="spread clients over K counters NAME-0..NAME-K-1",
    )
    parser.add_argument(
        "--processes", type=int, default=1, metavar="K", help="load-generator processes (1)"
    )
    parser.add_argument(
        "--shard",
        type=shard_argument,
        metavar="I/N",
        help="run shard I (0 to N-1) of N: every N-th counter from I and its clients; each"
        " shard is exact on its own, and 'ws-counter loadtest merge' judges them as one run."
        " auto/N: take the next free index of --shard-run (for replicas that share one"
        " command line, as compose --scale makes)",
    )
    parser.add_argument(
        "--shard-run",
        metavar="NAME",
        help="with --shard auto/N: the run's name, the same for every shard and new for"
        " every run (the counter shards-NAME hands out the indexes)",
    )
    parser.add_argument(
        "--dedup",
        choices=DEDUP_MODES,
        default="session",
        help="how increments are made exactly-once: a session per client numbering them"
        " 1, 2, 3 (default), or an id per increment",
    )


def _add_checks_and_output(parser: argparse.ArgumentParser) -> None:
    """What the run checks, where it may go, and what it writes."""
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="write every figure and the parameters here"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw the latency CDFs (needs matplotlib)"
    )
    parser.add_argument(
        "--max-p99-fanout-ms", type=float, metavar="X", help="fail if fan-out p99 exceeds X ms"
    )
    parser.add_argument(
        "--max-failed-connects", type=int, metavar="N", help="fail if more than N handshakes fail"
    )
    parser.add_argument(
        "--loopback-only",
        action="store_true",
        help="refuse any target that is not a loopback address",
    )
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="wait this long for every client to see the final total (15)",
    )


def shard_argument(text: str) -> tuple[int, int]:
    """I/N, or auto/N (the index claimed at the start: AUTO until then)."""
    index, _, count = text.partition("/")
    try:
        shard = AUTO if index == "auto" else int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N or auto/N, like 0/4") from None
    if shard[1] < 1 or not (shard[0] == AUTO or 0 <= shard[0] < shard[1]):
        raise argparse.ArgumentTypeError(f"{text!r}: I must be from 0 to N-1")
    return shard


def _claim(options: LoadOptions, run: str | None) -> int:
    if not run:
        raise PlanError("--shard auto/N needs --shard-run NAME, the same for every shard")
    if not is_valid_counter_name(f"shards-{run}"):
        raise PlanError(f"--shard-run {run!r}: a-z 0-9 _ - only")
    try:
        return runtime.run(claim_index(options, run))
    except CounterClientError as exc:
        raise LoadTestFailed(f"could not claim a shard index at {options.url}: {exc}") from exc


def run_merge_command(argv: list[str]) -> int:
    """``ws-counter loadtest merge A.json B.json ...``: the shards judged as one run."""
    parser = argparse.ArgumentParser(
        prog="ws-counter loadtest merge",
        description="Judge the --json reports of every shard of a run (--shard I/N) as one"
        " run: exit 0 only when the totals are exact and every threshold holds.",
    )
    parser.add_argument("reports", nargs="+", type=Path, help="every shard's --json report")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the merged report")
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    try:
        report = merge_reports(args.reports)
    except (MergeError, OSError, ValueError, KeyError) as exc:
        console.print(f"[red]loadtest merge: {exc}[/red]", highlight=False, soft_wrap=True)
        return 2
    console.print(f"{len(args.reports)} shards of one run, judged as one:")
    print_summary(report, console)
    if args.json:
        write_json(report, args.json)
    return 0 if report["passed"] else 1


def options_from_args(args: argparse.Namespace) -> LoadOptions:
    """LoadOptions from the parsed flags: each flag's dest is the field's name."""
    given = vars(args)
    return LoadOptions(
        **{field.name: given[field.name] for field in fields(LoadOptions) if field.name in given}
    )


def run_loadtest_command(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    console = Console(stderr=False)
    try:
        if options.shard is not None and options.shard[0] == AUTO:
            shard = _claim(options, args.shard_run), options.shard[1]
            options = replace(options, shard=shard)
            console.print(f"shard {shard[0]}/{shard[1]} of run {args.shard_run}")
        validate(options)
        if args.plot and not can_plot():
            raise PlanError(NEEDS_MATPLOTLIB)
        report = run_loadtest(options, console)
    except (PlanError, LoadTestFailed) as exc:
        console.print(f"[red]loadtest: {exc}[/red]", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        # The load generators were stopped (run_loadtest) before this line prints.
        console.print("\ninterrupted: the run has no result; its load generators are stopped.")
        return 130
    print_summary(report, console)
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot_report(report, args.plot)
    return 0 if report["passed"] else 1


def run_loadtest(options: LoadOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the load test in ``options.processes`` processes and return the report."""
    console = console or Console()
    run_id = secrets.token_hex(4)
    context = multiprocessing.get_context("spawn")
    inboxes: list[Connection] = []
    outboxes: list[Connection] = []
    processes = []
    for share in split(options):
        agent_inbox, to_agent = context.Pipe(duplex=False)
        from_agent, agent_outbox = context.Pipe(duplex=False)
        process = context.Process(
            target=agent_main, args=(share, run_id, agent_inbox, agent_outbox), daemon=True
        )
        process.start()
        agent_inbox.close()
        agent_outbox.close()
        outboxes.append(to_agent)
        inboxes.append(from_agent)
        processes.append(process)
    started = time.monotonic()
    progress: dict[int, dict[str, int]] = {}
    try:
        with _Display(console, progress, options) as display:
            exchange = _Exchange(inboxes, outboxes, processes, progress, display.refresh)
            connected = exchange.collect("connected", timeout=options.clients / options.ramp + 60)
            _require_a_connection(options, connected)
            exchange.broadcast(("go",))
            budget = options.max_run_seconds + 60
            sent = exchange.collect("sent", timeout=budget)
            targets: dict[str, int] = {}
            for message in sent:
                for counter, seq in message[1].items():
                    targets[counter] = max(targets.get(counter, 0), seq)
            exchange.broadcast(("finish", targets))
            results = [
                m[1] for m in exchange.collect("result", timeout=options.converge_timeout + 120)
            ]
    except BaseException:
        # Nothing more to learn from them: do not wait for their phases to time out.
        for process in processes:
            process.kill()
        raise
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return build_report(options, results, time.monotonic() - started, run_id)


def _require_a_connection(options: LoadOptions, connected: list[tuple[Any, ...]]) -> None:
    """A run in which no client could connect cannot be made: say why, at once."""
    if any(message[1] for message in connected):
        return
    reasons: Counter[str] = Counter()
    for message in connected:
        reasons.update(message[2])
    why = "; ".join(f"{reason} ({count}x)" for reason, count in reasons.most_common(3))
    raise LoadTestFailed(f"no client could connect to {options.url}: {why or 'no reason given'}")


class _Exchange:
    """Messages between the parent and its load-generator processes, phase by phase."""

    def __init__(
        self,
        pipes: list[Connection],
        outboxes: list[Connection],
        processes: list[Any],
        progress: dict[int, dict[str, int]],
        refresh: Callable[[], None],
    ) -> None:
        self.pipes = pipes
        self.outboxes = outboxes
        self.processes = processes
        self.progress = progress
        self.refresh = refresh

    def broadcast(self, message: tuple[Any, ...]) -> None:
        for pipe in self.outboxes:
            pipe.send(message)

    def collect(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        """Wait (on the pipes, with a deadline) for one ``kind`` message from every process."""
        deadline = time.monotonic() + timeout
        got: dict[int, tuple[Any, ...]] = {}
        sentinels = {process.sentinel: index for index, process in enumerate(self.processes)}
        # A process that sent its last message and exited leaves its pipe at
        # end of file: it is done, not failed, so its pipe is no longer watched.
        finished: set[int] = set()
        while len(got) < len(self.pipes):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadTestFailed(f"load generators did not report {kind!r} in {timeout:g}s")
            watched = [pipe for index, pipe in enumerate(self.pipes) if index not in finished]
            ready = wait([*watched, *sentinels], timeout=min(REFRESH_SECONDS, remaining))
            for item in ready:
                if item in sentinels:
                    index = sentinels[item]
                    if index not in got and not self.pipes[index].poll():
                        raise LoadTestFailed(self._exited(index))
                    continue
                assert isinstance(item, Connection)
                index = self.pipes.index(item)
                try:
                    message = item.recv()
                except EOFError:
                    if index not in got:
                        raise LoadTestFailed(self._exited(index)) from None
                    finished.add(index)
                    continue
                if message[0] == "fatal":
                    raise LoadTestFailed(message[1])
                if message[0] == "progress":
                    self.progress[index] = message[1]
                elif message[0] == kind:
                    got[index] = message
            self.refresh()
        return [got[index] for index in sorted(got)]

    def _exited(self, index: int) -> str:
        process = self.processes[index]
        process.join(timeout=5)
        return f"load-generator process {index} exited early (exit status {process.exitcode})"


class _Display:
    """A live table on a terminal; a plain line every few seconds otherwise."""

    def __init__(
        self, console: Console, progress: dict[int, dict[str, int]], options: LoadOptions
    ) -> None:
        self.console = console
        self.progress = progress
        self.options = options
        self.live: Live | None = None
        self.started = time.monotonic()
        self.last_line = 0.0
        self.previous: tuple[float, int, int] = (self.started, 0, 0)

    def __enter__(self) -> _Display:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, auto_refresh=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            self.live.__exit__(None, None, None)

    def _totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counts in self.progress.values():
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def _rates(self, totals: dict[str, int]) -> tuple[float, float]:
        now = time.monotonic()
        then, acked, frames = self.previous
        span = max(now - then, 1e-6)
        rates = ((totals.get("acked", 0) - acked) / span, (totals.get("frames", 0) - frames) / span)
        if span >= 1.0:
            self.previous = (now, totals.get("acked", 0), totals.get("frames", 0))
        return rates

    def _table(self) -> Table:
        totals = self._totals()
        ack_rate, frame_rate = self._rates(totals)
        table = Table(title=f"ws-counter loadtest {self.options.url}", show_header=True)
        for column in (
            "elapsed",
            "connected",
            "failed",
            "sent",
            "acked",
            "acks/s",
            "frames/s",
            "reconnects",
        ):
            table.add_column(column, justify="right")
        table.add_row(
            f"{time.monotonic() - self.started:.1f}s",
            f"{totals.get('connected', 0)}/{self.options.clients}",
            str(totals.get("failed", 0)),
            str(totals.get("sent", 0)),
            str(totals.get("acked", 0)),
            f"{ack_rate:,.0f}",
            f"{frame_rate:,.0f}",
            str(totals.get("reconnects", 0)),
        )
        return table

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table(), refresh=True)
            return
        now = time.monotonic()
        if now - self.last_line >= 2.0:
            self.last_line = now
            totals = self._totals()
            print(
                f"loadtest: {now - self.started:5.1f}s connected {totals.get('connected', 0)}"
                f"/{self.options.clients} sent {totals.get('sent', 0)} acked "
                f"{totals.get('acked', 0)} frames {totals.get('frames', 0)}",
                flush=True,
            )


def print_summary(report: dict[str, Any], console: Console) -> None:
    latency = Table(title="latency (ms)")
    for column in ("", "p50", "p95", "p99", "max", "count"):
        latency.add_column(column, justify="right")
    for name, key in (("connect", "connect_ms"), ("ack", "ack_ms"), ("fan-out", "fanout_ms")):
        figures = report[key]
        latency.add_row(
            name,
            *(f"{figures[p]:.2f}" for p in ("p50", "p95", "p99", "max")),
            str(figures["count"]),
        )
    console.print(latency)
    summary = Table(title="totals and throughput", show_header=False)
    summary.add_column(justify="left")
    summary.add_column(justify="right")
    rows = [
        (
            "clients connected",
            f"{report['clients_connected']} ({report['failed_connects']} failed)",
        ),
        ("increments acknowledged", f"{report['increments_acked']}"),
        ("expected total", f"{report['expected_total']}"),
        ("observed total", f"{report['observed_total']}"),
        ("increments/s", f"{report['throughput']['increments_per_s']:,.0f}"),
        ("frames/s received", f"{report['throughput']['frames_per_s']:,.0f}"),
        ("reconnects", f"{report['reconnects']}"),
        (
            "close codes",
            ", ".join(f"{c}: {n}" for c, n in sorted(report["close_codes"].items())) or "-",
        ),
    ]
    for row in rows:
        summary.add_row(*row)
    console.print(summary)
    generator = report.get("load_generator", {})
    if generator.get("saturated"):
        busiest = max(generator["cpu_busy"])
        console.print(
            f"[yellow]load-bound: a load process used {busiest:.0%} of a core; these figures"
            " describe the load generator, not the server (add --processes or machines:"
            " --shard I/N)[/yellow]",
            highlight=False,
        )
    for name, threshold in report["thresholds"].items():
        verdict = "ok" if threshold["ok"] else "FAILED"
        console.print(
            f"threshold {name}: {threshold['value']} (limit {threshold['limit']}) {verdict}"
        )
    if report["correct"]:
        console.print(
            f"[green]CORRECT: total {report['observed_total']} = sum of "
            f"{report['increments_acked']} acknowledged increments[/green]"
        )
    else:
        console.print("[red]INCORRECT:[/red]")
        for error in report["errors"]:
            console.print(f"  - {error}", highlight=False)
    sys.stdout.flush()
