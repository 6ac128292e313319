"""How every connection to Redis is made: credentials, TLS, timeouts, no retries of its own.

The data nodes (the one Redis, the master the Sentinels name, every node of a
cluster, including those discovered later) share REDIS_USERNAME,
REDIS_PASSWORD and the REDIS_TLS_* settings. The Sentinels have their own
user, password and TLS switch (REDIS_SENTINEL_*): Sentinel's ``requirepass``
and ``tls-port`` are configured apart from the data nodes', and managed
services often secure the two differently. Both use the same CA and client
certificate files.

redis-py takes TLS two ways: ``ssl=True`` for a client (``Redis``, Sentinel's
``master_for``) and a ``connection_class`` for a bare pool, so
``client_options`` and ``pool_options`` give each its own form. Data-node
connections are ``freshtls``'s, whose TLS follows a rotated CA or client
certificate without a restart.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..settings import Settings
from .freshtls import FreshSentinelSSLConnection, FreshSSLConnection
from .typed import new_sentinel

# Connections for requests per Redis node (one Redis, or a cluster's primary); each
# carries one pipelined round trip at a time.
REQUEST_CONNECTIONS = 32


def uses_tls(settings: Settings) -> bool:
    return settings.redis_tls or settings.redis_url.startswith("rediss://")


def _base(socket_timeout: float | None, connect_timeout: float) -> dict[str, Any]:
    # Neither client retries on its own: a retried call after a lost reply could
    # apply an increment twice (the caller decides, by the step that failed).
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_error": [],
        "decode_responses": True,
    }


def _tls(settings: Settings) -> dict[str, Any]:
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": settings.redis_tls_ca_file or None,
        "ssl_certfile": settings.redis_tls_cert_file or None,
        "ssl_keyfile": settings.redis_tls_key_file or None,
        "ssl_check_hostname": settings.redis_tls_check_hostname,
    }


def _credentials(username: str, password: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if username:
        options["username"] = username
    if password:
        options["password"] = password
    return options


def client_options(settings: Settings, socket_timeout: float | None) -> dict[str, Any]:
    """Keyword arguments of a ``redis.asyncio.Redis`` client of a data node."""
    options = _base(socket_timeout, settings.redis_timeout)
    options.update(_credentials(settings.redis_username, settings.redis_password))
    if uses_tls(settings):
        options.update(_tls(settings))
    return options


def pool_options(settings: Settings, socket_timeout: float | None) -> dict[str, Any]:
    """The same for a connection pool, which names its connection class instead of ``ssl``."""
    options = client_options(settings, socket_timeout)
    if options.pop("ssl", False):
        options["connection_class"] = FreshSSLConnection
    return options


def sentinel_options(settings: Settings, socket_timeout: float | None) -> dict[str, Any]:
    """Keyword arguments of a client of one Sentinel."""
    options = _base(socket_timeout, settings.redis_timeout)
    options.update(_credentials(settings.redis_sentinel_username, settings.redis_sentinel_password))
    if settings.redis_sentinel_tls:
        options.update(_tls(settings))
    return options


def new_client(settings: Settings, socket_timeout: float | None) -> aioredis.Redis:
    """A client of the one Redis, or of the master the Sentinels name."""
    if settings.redis_sentinels:
        sentinel = new_sentinel(
            list(settings.redis_sentinels),
            sentinel_kwargs=sentinel_options(settings, settings.redis_timeout),
        )
        options = client_options(settings, socket_timeout)
        if options.get("ssl"):
            options["connection_class"] = FreshSentinelSSLConnection
        client: aioredis.Redis = sentinel.master_for(settings.redis_master_name, **options)
        return client
    options = pool_options(settings, socket_timeout)
    if socket_timeout is None:
        return aioredis.Redis.from_url(settings.redis_url, **options)
    # Requests share a few connections rather than opening one per counter
    # with a call in flight: a load over 1,000 counters opened hundreds at
    # once and queued behind their handshakes for seconds. A request waits
    # for a free connection (at most the Redis timeout: then unavailable,
    # nothing sent).
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REQUEST_CONNECTIONS,
        timeout=settings.redis_timeout,
        **options,
    )
    return aioredis.Redis(connection_pool=pool)
