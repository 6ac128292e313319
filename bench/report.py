"""Tables, ratios and a plot of one benchmark run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

OURS = "ws-counter x1"
BASELINE = "naive (await each)"
BROADCAST = "naive + broadcast()"
PEER = "broadcaster+starlette"
FLOOR = "raw-socket floor"


# A load process this busy may be the bottleneck rather than the server.
SATURATED = 0.9


def _busy(fraction: float) -> str:
    return f"{fraction:.0%}" + (" !" if fraction >= SATURATED else "")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def _table(title: str, header: str, align: str, rows: Iterable[str]) -> list[str]:
    """A section of one table: its heading, column names, alignment row and rows."""
    return ["", f"## {title}", "", header, align, *rows]


def render_markdown(results: dict[str, Any]) -> str:
    lines = ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in results["machine"].items()]
    lines += [
        "",
        "## Increment throughput (writers as fast as acks allow)",
        "",
        "| server | exactly-once by (http: HTTP API, sessions) | acked/s | exact | server CPU s | "
        "vs naive | "
        "RSS growth MiB | load generator busy |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    by_server = {(row["server"], row.get("dedup", "id")): row for row in results["throughput"]}
    naive = by_server.get((BASELINE, "id"), {}).get("per_second")
    for row in results["throughput"]:
        lines.append(
            f"| {row['server']} | {row.get('dedup', 'id')} | {row['per_second']:,.0f} | "
            f"{row['exact']} | {row['cpu_seconds']:.1f} | {_ratio(row['per_second'], naive)} | "
            f"{row['rss_growth_kib'] / 1024:.1f} | {_busy(row['generator_busy'])} |"
        )
    for server in sorted({server for server, dedup in by_server if dedup == "session"}):
        sessions = by_server[(server, "session")]["per_second"]
        ids = by_server.get((server, "id"), {}).get("per_second")
        lines.append(f"\n{server}: sessions / ids = {_ratio(sessions, ids)} (same run)")
        http = by_server.get((server, "http"), {}).get("per_second")
        if http is not None:
            lines.append(
                f"\n{server}: HTTP API (one request at a time per kept-alive connection)"
                f" / WebSocket sessions = {_ratio(http, sessions)} (same run)"
            )
    floors = results["floors"]
    if floors:
        lines += [
            "",
            "Redis alone running the same Lua step (redis-benchmark, 50 clients): "
            f"{floors['redis_lua_per_s_50_clients']:,.0f}/s unpipelined, "
            f"{floors['redis_lua_per_s_50_clients_pipelined']:,.0f}/s pipelined (16).",
        ]
    lines += [
        "",
        "## Fan-out (time from send until every client has the seq)",
        "",
        "| server | clients | incr/s | p50 ms | p99 ms | max ms | frames/CPU-s | "
        "unreached | exact | RSS growth MiB | load generator busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in results["fanout"]:
        lines.append(
            f"| {row['server']} | {row['clients']:,} | {row['rate']:,.0f} | {row['p50_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['frames_per_cpu_second']:,.0f} | "
            f"{row['unreached']} | {row['exact']} | {row['rss_growth_kib'] / 1024:.1f} | "
            f"{_busy(row['generator_busy'])} |"
        )
    lines += [
        "",
        "Load generator busy: the busiest load process's share of one core; at "
        f"{SATURATED:.0%} or more (marked !) that process, not the server, may have set the pace.",
    ]
    lines += [
        "",
        "## Ratios measured in this run",
        "",
        "| clients | incr/s | p99 ms: ours / naive / broadcast() / peer | "
        "frames per CPU-s: ours vs floor | vs broadcast() |",
        "|---:|---:|---|---:|---:|",
    ]
    index = {(r["server"], r["clients"], r["rate"]): r for r in results["fanout"]}
    for clients, rate in sorted({(r["clients"], r["rate"]) for r in results["fanout"]}):
        ours = index.get((OURS, clients, rate))
        if ours is None:
            continue
        p99s = " / ".join(
            f"{index[(name, clients, rate)]['p99_ms']:.1f}"
            if (name, clients, rate) in index
            else "-"
            for name in (OURS, BASELINE, BROADCAST, PEER)
        )
        floor = index.get((FLOOR, clients, rate), {}).get("frames_per_cpu_second")
        broadcast = index.get((BROADCAST, clients, rate), {}).get("frames_per_cpu_second")
        lines.append(
            f"| {clients:,} | {rate:,.0f} | {p99s} | "
            f"{_ratio(ours['frames_per_cpu_second'], floor)} | "
            f"{_ratio(ours['frames_per_cpu_second'], broadcast)} |"
        )
    if results.get("redis_memory"):
        lines += _table(
            "Redis memory per increment (load-test clients through ws-counter x1)",
            "| exactly-once by | increments | used_memory growth | bytes per increment | "
            "keys added | exact |",
            "|---|---:|---:|---:|---:|---|",
            (
                f"| {row['dedup']} | {row['increments']:,} | {row['used_memory_growth']:,} | "
                f"{row['bytes_per_increment']:.1f} | {row['keys_added']:,} | {row['exact']} |"
                for row in results["redis_memory"]
            ),
        )
    if results.get("many_counters"):
        lines += _table(
            "Many counters: one Redis against a Redis Cluster (one worker each, same run)",
            "| Redis | counters | clients | increments/s | fan-out p99 ms | exact |",
            "|---|---:|---:|---:|---:|---|",
            (
                f"| {row['redis']} | {row['counters']:,} | {row['clients']:,} | "
                f"{row['increments_per_second']:,.0f} | {row['fanout_p99_ms']:.1f} |"
                f" {row['exact']} |"
                for row in results["many_counters"]
            ),
        )
    if results.get("spread"):
        base = results["spread"][0]["per_second"] or 1
        lines += _table(
            "Distinct counters, increments in flight (one worker, one Redis, same run)",
            "| connections | counters | in flight each | acks/s | of the first row | errors |",
            "|---:|---:|---:|---:|---:|---|",
            (
                f"| {row['connections']:,} | {row['counters']:,} | {row['window']} | "
                f"{row['per_second']:,} | {row['per_second'] / base:.2f}x | "
                f"{row['error_codes'] or 'none'} |"
                for row in results["spread"]
            ),
        )
    lines += _scale_sections(results)
    lines += _table(
        "Idle memory per connection (server RSS)",
        "| server | KiB per connection |",
        "|---|---:|",
        (f"| {name} | {kib:.1f} |" for name, kib in results["idle_kib"].items()),
    )
    if results.get("failures"):
        lines += ["", "## Measurements that failed", ""]
        lines += [f"- {failure}" for failure in results["failures"]]
    return "\n".join(lines) + "\n"


def pyplot() -> Any:
    """matplotlib's pyplot on a backend without a screen, or None where it is missing."""
    try:
        # Optional (the plot extra), and its backend must be chosen before pyplot loads.
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    return plt


def save_figure(plt: Any, figure: Any, axis: Any, path: Path, labels: tuple[str, str]) -> None:
    """Label ``axis`` (x, y), add its grid and legend, and write ``figure`` to ``path``."""
    axis.set_xlabel(labels[0])
    axis.set_ylabel(labels[1])
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def render_plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    rows = results["fanout"]
    largest = max((r["clients"] for r in rows), default=0)
    figure, (latency, cost) = plt.subplots(1, 2, figsize=(12, 4.5))
    for server in dict.fromkeys(r["server"] for r in rows):
        mine = sorted(
            (r for r in rows if r["server"] == server and r["clients"] == largest),
            key=lambda r: r["rate"],
        )
        if not mine:
            continue
        rates = [r["rate"] for r in mine]
        if server != FLOOR:
            latency.plot(rates, [max(r["p99_ms"], 0.01) for r in mine], marker="o", label=server)
        cost.plot(rates, [r["frames_per_cpu_second"] for r in mine], marker="o", label=server)
    for axis in (latency, cost):
        axis.set_xscale("log")
        axis.set_xlabel("increments per second")
        axis.grid(True, alpha=0.3)
    latency.set_yscale("log")
    latency.set_ylabel(f"p99 ms until all {largest:,} clients have it")
    cost.set_ylabel("frames delivered per server CPU-second")
    cost.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    _plot_rss(results, path.with_name("rss.png"), plt)


def _plot_rss(results: dict[str, Any], path: Path, plt: Any) -> None:
    """The server's RSS through each fan-out run of ws-counter, sampled every 0.1 s."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for row in results["fanout"]:
        if row["server"].startswith("ws-counter") and row["rss_kib"]:
            start = row["rss_kib"][0][1]
            axis.plot(
                [t for t, _ in row["rss_kib"]],
                [(kib - start) / 1024 for _, kib in row["rss_kib"]],
                label=f"{row['server']} {row['clients']:,} clients {row['rate']:,.0f}/s",
            )
    save_figure(plt, figure, axis, path, ("seconds into the run", "server RSS growth (MiB)"))


def _scale_sections(results: dict[str, Any]) -> list[str]:
    """A hot counter with and without the publish bound, the cost of TLS, and churn."""
    lines: list[str] = []
    if results.get("hot"):
        lines += _table(
            "A hot counter, 64 subscribers (same run)",
            "| WS_PUBLISH_RATE | msgs/s | per ack | Redis CPU us/ack | p50 ms | p99 ms | exact |",
            "|---:|---:|---:|---:|---:|---:|---|",
            (
                f"| {row['publish_rate']} | {row['messages_per_second']:,} | "
                f"{row['messages_per_ack']} | {row['redis_cpu_per_ack_us']} | "
                f"{row['fanout_p50_ms']:.1f} | {row['fanout_p99_ms']:.1f} | {row['exact']} |"
                for row in results["hot"]
            ),
        )
    if results.get("tls"):
        lines += _table(
            "Cost of TLS (same run, plain and TLS in alternation)",
            "| hop | plain incr/s | TLS incr/s | TLS / plain | exact |",
            "|---|---:|---:|---:|---|",
            (
                f"| {row['hop']} | {row['plain_per_second']:,} | {row['tls_per_second']:,} |"
                f" {row['ratio']:.2f}x | {row['exact']} |"
                for row in results["tls"]
            ),
        )
    for row in results.get("churn", []):
        lines += [
            "",
            "## Churn: clients joining and leaving distinct counters",
            "",
            f"{row['joins']:,} joins at {row['joins_per_second']:,}/s, {row['failures']} failed;"
            f" snapshot p50 {row['snapshot_p50_ms']} ms, p99 {row['snapshot_p99_ms']} ms;"
            f" Redis channels {row['channels_before']} before, {row['channels_after_grace']}"
            " after the grace.",
        ]
    return lines
