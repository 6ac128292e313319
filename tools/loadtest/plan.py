"""What a load test does, decided before any socket opens (pure, unit-tested)."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from ws_counter.worker.core.protocol import COUNTERS_PREFIX, DEFAULT_COUNTER, is_valid_counter_name
from ws_counter_client.urls import WEBSOCKET_SCHEMES, tls_context

# How each load client makes its increments exactly-once: numbers in a session
# of its own (the default), or an id per increment.
DEDUP_MODES = ("session", "id")


class PlanError(ValueError):
    """The options do not describe a load test that can run; the message says why."""


@dataclass(frozen=True)
class LoadOptions:
    url: str
    clients: int = 100
    increments: int | None = None
    rate: float | None = None
    duration: float | None = None
    ramp: float = 1000.0
    # None: the counter the URL names (/counters/NAME), else "default".
    counter: str | None = None
    counters: int = 1
    processes: int = 1
    max_p99_fanout_ms: float | None = None
    max_failed_connects: int | None = None
    loopback_only: bool = False
    converge_timeout: float = 15.0
    max_run_seconds: float = 600.0
    dedup: str = "session"
    # CA certificates (PEM) to trust for a wss:// URL; None: the system's.
    ca_file: str | None = None
    # (I, N): this run is shard I of N; each takes every N-th counter (from I) and the
    # clients of those counters, so shards never share a counter.
    shard: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The parameters for the report, without the token a URL may carry."""
        parameters = asdict(self)
        parameters["url"] = re.sub(r"(token=)[^&]*", r"\1REDACTED", self.url)
        parameters["counter"] = target_counter(self)
        return parameters


@dataclass(frozen=True)
class Share:
    """One load-generator process's part of the run."""

    index: int
    url: str
    clients: list[tuple[int, str]]  # (global client number, counter name)
    increments: int | None
    rate: float | None
    duration: float | None
    ramp: float
    converge_timeout: float
    max_run_seconds: float
    dedup: str
    ca_file: str | None = None


def validate(options: LoadOptions) -> None:  # noqa: PLR0912 (one check per option, each naming its flag)
    if options.clients < 1:
        raise PlanError("--clients must be at least 1")
    if options.processes < 1 or options.processes > options.clients:
        raise PlanError("--processes must be between 1 and --clients")
    if options.counters < 1 or options.counters > options.clients:
        raise PlanError("--counters must be between 1 and --clients")
    by_count = options.increments is not None
    by_rate = options.rate is not None or options.duration is not None
    if by_count == by_rate:
        raise PlanError("give either --increments M or both --rate R and --duration SECONDS")
    if by_rate and (options.rate is None or options.duration is None):
        raise PlanError("--rate and --duration go together")
    if options.increments is not None and options.increments < 0:
        raise PlanError("--increments must not be negative")
    if options.rate is not None and options.rate <= 0:
        raise PlanError("--rate must be positive")
    if options.duration is not None and not 0 < options.duration <= options.max_run_seconds:
        raise PlanError(f"--duration must be positive and at most {options.max_run_seconds:g}s")
    if options.dedup not in DEDUP_MODES:
        raise PlanError(f"--dedup must be one of {', '.join(DEDUP_MODES)}")
    if options.ramp <= 0:
        raise PlanError("--ramp must be positive")
    if options.converge_timeout < 0:
        raise PlanError("--converge-timeout must not be negative")
    named = counter_in_url(options.url)
    if named is not None and options.counter is not None and named != options.counter:
        raise PlanError(
            f"the URL names counter {named!r} but --counter says {options.counter!r}:"
            " give the counter one way"
        )
    for name in counter_names(options):
        if not is_valid_counter_name(name):
            raise PlanError(f"invalid counter name {name!r}: 1 to 64 of a-z 0-9 _ -")
    if urlsplit(options.url).scheme not in WEBSOCKET_SCHEMES:
        raise PlanError("the URL must start with ws://, wss://, http:// or https://")
    if options.ca_file:
        try:
            tls_context(options.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise PlanError(f"--ca {options.ca_file}: {exc}") from None
    if options.shard is not None:
        index, count = options.shard
        if not 0 <= index < count:
            raise PlanError(f"--shard {index}/{count}: I must be from 0 to N-1")
        if options.counters < count:
            raise PlanError(
                f"--shard {index}/{count}: each shard needs counters of its own: give"
                f" --counters {count} or more"
            )
        if options.processes > len(shard_clients(options)):
            raise PlanError(
                f"--processes must be at most this shard's {len(shard_clients(options))} clients"
            )
    if options.loopback_only and not is_loopback_url(options.url):
        raise PlanError(f"--loopback-only: {options.url} is not a loopback address")


def is_loopback_url(url: str) -> bool:
    """True when every address the URL's host resolves to is a loopback address."""
    host = urlsplit(url).hostname
    if host is None:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def counter_in_url(url: str) -> str | None:
    """What follows ``/counters/`` in the URL's path (checked by ``validate``), if anything."""
    _, found, name = urlsplit(url).path.partition(COUNTERS_PREFIX)
    return name.rstrip("/") if found else None


def target_counter(options: LoadOptions) -> str:
    """--counter, else the counter the URL names, else the default one."""
    if options.counter is not None:
        return options.counter
    named = counter_in_url(options.url)
    return DEFAULT_COUNTER if named is None else named


def counter_names(options: LoadOptions) -> list[str]:
    counter = target_counter(options)
    if options.counters == 1:
        return [counter]
    return [f"{counter}-{index}" for index in range(options.counters)]


def shard_clients(options: LoadOptions) -> list[tuple[int, str]]:
    """(client number, counter) for every client of this run: clients are dealt round-robin
    over the counters; a shard I/N keeps the counters at I, I+N, ... and their clients."""
    names = counter_names(options)
    assignments = [(number, names[number % len(names)]) for number in range(options.clients)]
    if options.shard is None:
        return assignments
    index, count = options.shard
    mine = set(names[index::count])
    return [(number, counter) for number, counter in assignments if counter in mine]


def split(options: LoadOptions) -> list[Share]:
    """This run's clients over its processes; the rate and ramp in proportion."""
    assignments = shard_clients(options)
    shares = []
    for index in range(options.processes):
        mine = assignments[index :: options.processes]
        shares.append(
            Share(
                index=index,
                url=options.url,
                clients=mine,
                increments=options.increments,
                rate=None if options.rate is None else options.rate * len(mine) / options.clients,
                duration=options.duration,
                ramp=options.ramp * len(mine) / options.clients,
                converge_timeout=options.converge_timeout,
                max_run_seconds=options.max_run_seconds,
                dedup=options.dedup,
                ca_file=options.ca_file,
            )
        )
    return shares
