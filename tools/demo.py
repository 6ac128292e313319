"""``ws-counter cluster`` and ``ws-counter demo``: the local cluster for people."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from .cluster import ClusterError, ClusterOptions, LocalCluster
from .loadtest.cli import print_summary, run_loadtest
from .loadtest.plan import LoadOptions, target_counter
from .processes import Child, ChildFailed


def security_line(*, tls: bool, haproxy: bool) -> str:
    """Which hops are encrypted, each named: never more than is true."""
    if not tls:
        return (
            "none (plain ws:// and http://, a Redis without password or TLS): for local"
            " development only; --tls for TLS from clients and to Redis, and an"
            " authenticated Redis"
        )
    hops = "TLS from clients to HAProxy, and from the workers to Redis (replication and the"
    hops += " cluster bus too), which takes only its least-privilege ACL user"
    if haproxy:
        return f"{hops}; HAProxy reaches the workers over plain HTTP on loopback"
    return hops


def _describe(cluster: LocalCluster, console: Console) -> None:
    if cluster.uses_haproxy:
        front = "HAProxy (leastconn, health checks on /readyz)"
    elif cluster.options.haproxy is False:
        front = "no HAProxy (--no-haproxy): workers share the port with SO_REUSEPORT"
    else:
        front = "HAProxy is not installed: workers share the port with SO_REUSEPORT"
    console.print(f"ws-counter cluster is up: [bold]{cluster.url}[/bold]", highlight=False)
    console.print(f"  counter page:  {page_url(cluster)}", highlight=False)
    console.print(f"  front:         {front}", highlight=False)
    security = security_line(tls=cluster.ca_file is not None, haproxy=cluster.uses_haproxy)
    console.print(
        f"  security:      {security}",
        highlight=False,
        soft_wrap=True,
    )
    if cluster.ca_file is not None:
        # soft_wrap: a path broken over two lines cannot be copied.
        console.print(
            f"  TLS:           a throwaway CA signed the certificates: {cluster.ca_file}\n"
            "                 clients take it with --ca; browsers: trust it, or accept the"
            " warning",
            highlight=False,
            soft_wrap=True,
        )
    if cluster.prometheus is not None and cluster.prometheus.child is not None:
        console.print(
            f"  prometheus     pid {cluster.prometheus.child.pid}  {cluster.prometheus.url}"
            f"  (alerts: {cluster.prometheus.alerts_page()})",
            highlight=False,
        )
    if cluster.haproxy is not None:
        console.print(
            f"  haproxy        pid {cluster.haproxy.pid}  port {cluster.options.port}",
            highlight=False,
        )
    for index, child in enumerate(cluster.workers):
        console.print(
            f"  {child.name:14} pid {child.pid}  {cluster.worker_url(index)}", highlight=False
        )
    if cluster.redis is not None:
        console.print(
            f"  redis          pid {cluster.redis.pid}  {cluster.redis_url}", highlight=False
        )
    if cluster.redis_cluster is not None:
        primaries = cluster.redis_cluster.primary_ports()
        for port, child in cluster.redis_cluster.nodes.items():
            role = "primary" if port in primaries else "replica"
            console.print(
                f"  redis {role:8} pid {child.pid}  redis://127.0.0.1:{port}", highlight=False
            )


def page_url(cluster: LocalCluster, path: str = "/") -> str:
    scheme = "https" if cluster.options.tls else "http"
    return f"{scheme}://{cluster.options.host}:{cluster.options.port}{path}"


def run_cluster_command(args: argparse.Namespace) -> int:
    console = Console()
    echo = (
        (lambda name, line: console.print(f"[dim]{name}:[/dim] {line}", highlight=False))
        if args.verbose
        else None
    )
    options = ClusterOptions(
        workers=args.workers,
        port=args.port,
        host=args.host,
        haproxy=False if args.no_haproxy else None,
        redis_cluster=args.redis_cluster,
        log_dir=args.log_dir,
        echo=echo,
        tls=args.tls,
        monitor=5.0 if args.monitor else 0.0,
    )
    try:
        cluster = LocalCluster(options)
        if not cluster.uses_haproxy and not args.no_haproxy:
            console.print(
                "haproxy is not installed (apt-get install -y haproxy): "
                "workers share one port with SO_REUSEPORT instead"
            )
        with cluster:
            _describe(cluster, console)
            status = 0
            if args.command == "demo":
                status = _demo(cluster, args, console)
            else:
                report_ends(cluster, console)
                wait_for_interrupt(lambda: console.print("Ctrl-C stops everything."))
                console.print("stopping ...")
    except (ClusterError, ChildFailed) as exc:
        print(f"ws-counter {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Ctrl-C while starting or during the load test: what was started is stopped
        # (the with block's exit) before this line prints.
        console.print("\ninterrupted.")
        status = 130
    console.print("stopped; nothing left running.")
    return status


def _demo(cluster: LocalCluster, args: argparse.Namespace, console: Console) -> int:
    console.print(
        f"\nload test: {args.clients} clients through {cluster.url}, "
        f"{args.increments} increments each, spread over the workers"
    )
    options = LoadOptions(
        url=cluster.url,
        clients=args.clients,
        increments=args.increments,
        ramp=2000.0,
        processes=2 if args.clients >= 200 else 1,
        loopback_only=True,
        ca_file=str(cluster.ca_file) if cluster.ca_file else None,
    )
    report = run_loadtest(options, console)
    print_summary(report, console)
    status = 0 if report["passed"] else 1
    if args.exit:
        return status
    counter = target_counter(options)
    page = page_url(cluster, f"/counters/{counter}")
    wait_for_interrupt(
        lambda: console.print(
            "\nThe cluster stays up until Ctrl-C: add to the counter in the page, or with\n"
            f"  {client_command(cluster, counter)}\n"
            f"Counter page: [bold]{page}[/bold]",
            highlight=False,
        )
    )
    console.print("stopping ...")
    return status


def client_command(cluster: LocalCluster, counter: str) -> str:
    """``ws-counter client`` for ``counter``, spelled so that it runs as pasted into any
    shell: by its full path when the virtualenv that holds it is not on PATH."""
    installed = Path(sys.executable).with_name("ws-counter")
    on_path = shutil.which("ws-counter")
    if on_path and (not installed.exists() or Path(on_path).samefile(installed)):
        program = ["ws-counter"]
    elif installed.exists():
        program = [str(installed.absolute())]
    else:
        program = [sys.executable, "-m", "ws_counter.tools"]
    words = [*program, "client", f"{cluster.url}counters/{counter}"]
    if cluster.ca_file is not None:
        words += ["--ca", str(cluster.ca_file.absolute())]
    return shlex.join(words)


def report_ends(cluster: LocalCluster, console: Console) -> None:
    """Say at once when a process of the cluster ends by itself (killed, crashed): the
    banner listed it, and what is left goes on serving."""

    def ended(child: Child) -> None:
        running = sum(worker.running for worker in cluster.workers)
        console.print(
            f"[yellow]{child.name} (pid {child.pid}) {child.how_it_ended()}:[/yellow] it is not"
            f" restarted; {running} of {len(cluster.workers)} workers still serve. Ctrl-C"
            " stops the rest.",
            highlight=False,
            soft_wrap=True,
        )

    for child in cluster.children:
        child.on_exit(ended)


def wait_for_interrupt(announce: Callable[[], None] = lambda: None) -> None:
    """Block until SIGINT or SIGTERM arrives.

    ``announce`` runs once the handlers are in place, so that whoever reads
    its message and sends the signal cannot be too early.
    """
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        announce()
        stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
