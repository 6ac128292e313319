"""The blocking redis-py calls the tests make, typed once (see worker/store/typed.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.client import PubSub


def run_command(client: redis.Redis, *args: str) -> Any:
    execute: Callable[..., Any] = client.execute_command
    return execute(*args)


def pubsub_of(client: redis.Redis) -> PubSub:
    make: Callable[[], PubSub] = client.pubsub
    return make()
