"""Where a client connects: a counter's URL on a worker or behind a proxy, without I/O."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from ws_counter.worker.core.protocol import COUNTERS_PREFIX, DEFAULT_COUNTER

# The page's http(s):// address is what people copy: it names the same service.
WEBSOCKET_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def counter_url(url: str, counter: str | None = None, **query: str | int | None) -> str:
    """``url`` pointed at ``counter`` on the same service, with ``query`` added.

    A path in front of ``/counters/`` (a proxy's prefix) is kept; a URL that
    already names the counter (or the service's root, for ``default``) is kept
    as given; without ``counter`` the path is left alone. ``http://`` and
    ``https://`` become ``ws://`` and ``wss://``; any other scheme is a
    ValueError. Parameters that are None are left out:
    ``counter_url("ws://h:8080", "votes", token=None, since=7)`` is
    ``ws://h:8080/counters/votes?since=7``.
    """
    parts = urlsplit(url)
    scheme = WEBSOCKET_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"{url!r} is not a ws://, wss://, http:// or https:// URL")
    path = parts.path or "/"
    prefix = parts.path.rstrip("/")
    names_it = prefix.endswith(f"{COUNTERS_PREFIX}{counter}") or (
        counter == DEFAULT_COUNTER and prefix == ""
    )
    if counter is not None and not names_it:
        path = f"{prefix.partition(COUNTERS_PREFIX)[0]}{COUNTERS_PREFIX}{counter}"
    added = urlencode({name: value for name, value in query.items() if value is not None})
    return urlunsplit(
        (scheme, parts.netloc, path, "&".join(filter(None, [parts.query, added])), "")
    )


def counter_of_url(url: str) -> str:
    """The counter a URL names: what follows ``/counters/``, else ``default``."""
    _, found, name = urlsplit(url).path.partition(COUNTERS_PREFIX)
    return name.rstrip("/") if found and name.rstrip("/") else DEFAULT_COUNTER


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context that trusts only the CAs in ``ca_file`` (PEM); None: the system's CAs."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def tls_options(url: str, context: ssl.SSLContext | None) -> dict[str, Any]:
    """websockets' ``ssl`` argument for ``url``: only a wss:// URL takes one."""
    return {"ssl": context} if context is not None and url.startswith("wss://") else {}
