"""The open-file limit, which caps how many WebSocket connections a process holds."""

from __future__ import annotations

import resource

# Descriptors a process needs besides its connections: Redis, pipes, logs.
SPARE_FILES = 64


def raise_open_file_limit(connections: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows.

    Returns a readable warning when the limit stays below what ``connections``
    need, None otherwise. Containers and shells often start with a soft limit
    of 1024 under a much higher hard limit, so raising it ourselves is what
    makes thousands of connections work without extra set-up.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FILES
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < needed:
        return (
            f"open-file limit is {soft} but {connections} connections need about {needed}:"
            " raise it (ulimit -n, or the container's nofile ulimit)"
        )
    return None
