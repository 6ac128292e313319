"""Where a client connects: a counter's URL on a worker or behind a proxy, without I/O."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from worker.core.protocol import COUNTERS_PREFIX, DEFAULT_COUNTER


def counter_url(url: str, counter: str | None = None, **query: str | int | None) -> str:
    """``url`` pointed at ``counter`` on the same service, with ``query`` added.

    A path in front of ``/counters/`` (a proxy's prefix) is kept; a URL that
    already names the counter (or the service's root, for ``default``) is kept
    as given; without ``counter`` the path is left alone. Parameters that are
    None are left out: ``counter_url("ws://h:8080", "votes", token=None, since=7)``
    is ``ws://h:8080/counters/votes?since=7``.
    """
    parts = urlsplit(url)
    path = parts.path or "/"
    prefix = parts.path.rstrip("/")
    names_it = prefix.endswith(f"{COUNTERS_PREFIX}{counter}") or (
        counter == DEFAULT_COUNTER and prefix == ""
    )
    if counter is not None and not names_it:
        path = f"{prefix.partition(COUNTERS_PREFIX)[0]}{COUNTERS_PREFIX}{counter}"
    added = urlencode({name: value for name, value in query.items() if value is not None})
    return urlunsplit(
        (parts.scheme, parts.netloc, path, "&".join(filter(None, [parts.query, added])), "")
    )


def counter_of_url(url: str) -> str:
    """The counter a URL names: what follows ``/counters/``, else ``default``."""
    _, found, name = urlsplit(url).path.partition(COUNTERS_PREFIX)
    return name.rstrip("/") if found and name.rstrip("/") else DEFAULT_COUNTER
