"""The least privilege a worker needs in Redis, as one ACL rule list.

Only the commands the worker sends (and its Lua steps call), only keys and
channels under ``wsc:``. Operators create the worker's user with
``acl_line`` (docs/operations.md prints it; a test holds the two alike), the
shipped deployments load it, and the tests run the worker as that user.

redis-py names itself on every new connection with CLIENT SETINFO and ignores
the refusal: the rule is left out, since Redis before 7.2 rejects an ACL that
names it.
"""

from __future__ import annotations

# What the worker itself sends.
_SENT = (
    "evalsha", "eval", "wait", "hmget", "ping", "select",
    "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe",
    # A Redis Cluster's slot map and health.
    "cluster|slots", "cluster|info",
)  # fmt: skip
# What the Lua steps in worker/store/lua call.
_CALLED = (
    "hget", "hmget", "hset", "hdel", "hgetall", "hincrby", "get", "set", "expire", "time",
    "publish", "spublish",
)  # fmt: skip
WORKER_COMMANDS: tuple[str, ...] = tuple(dict.fromkeys(_SENT + _CALLED))
WORKER_ACL_RULES = " ".join(
    ("resetkeys", "~wsc:*", "resetchannels", "&wsc:*", "-@all", *(f"+{c}" for c in WORKER_COMMANDS))
)


def acl_line(user: str, password: str) -> str:
    """The ``user`` directive of redis.conf or an ACL file for the worker's user."""
    return f"user {user} on >{password} {WORKER_ACL_RULES}"
