"""Where a counter lives in Redis: every key and the channel share the ``{NAME}`` hash tag.

* ``wsc:{NAME}``: a hash with ``epoch``, ``seq`` and ``total``;
* ``wsc:{NAME}:s:<session>``: a session's hash: the next number it expects
  and the outcomes of its last W increments, kept while the session is used;
* ``wsc:{NAME}:id:<id>``: the outcome of an increment sent with that id, kept
  for the dedup window so that a retry gets the original ack;
* ``wsc:{NAME}:updates``: the channel that carries the state after every
  change, published by the same Lua call that made it;
* ``wsc:{fleet}:workers``: one hash for the whole deployment, a field per
  live worker with its connection count (worker/store/fleet.py).

One hash tag puts all of a counter's keys in one Redis Cluster slot, so each
Lua step touches a single shard.
"""

from __future__ import annotations

# Carries nothing: subscribing to it first tells a worker its pub/sub
# connection is up before any counter has clients.
CONTROL_CHANNEL = "wsc:control"
_CHANNEL_PREFIX, _CHANNEL_SUFFIX = "wsc:{", "}:updates"


def state_key(counter: str) -> str:
    return f"wsc:{{{counter}}}"


def id_key(counter: str, increment_id: str) -> str:
    return f"wsc:{{{counter}}}:id:{increment_id}"


def session_key(counter: str, session: str) -> str:
    return f"wsc:{{{counter}}}:s:{session}"


def channel_name(counter: str) -> str:
    return f"{_CHANNEL_PREFIX}{counter}{_CHANNEL_SUFFIX}"


def counter_of_channel(channel: str) -> str | None:
    if channel.startswith(_CHANNEL_PREFIX) and channel.endswith(_CHANNEL_SUFFIX):
        return channel[len(_CHANNEL_PREFIX) : -len(_CHANNEL_SUFFIX)]
    return None


# The counter whose slot holds FLEET_KEY (for routing on a Redis Cluster).
FLEET_COUNTER = "fleet"
FLEET_KEY = "wsc:{fleet}:workers"
