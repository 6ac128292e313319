"""TLS to Redis that follows its files: a replaced CA bundle or client certificate is
used by the next connection made, with no restart.

redis-py builds a connection's SSLContext on its first connect and keeps it for
every reconnect of that connection, so a worker would verify Redis with the CA
it started with until it restarts: rotating a CA (docs/operations.md,
"Certificates") would need a rollout at each step. Here each connect compares
the files' signatures (inode, size, mtime) with those its context was built
from and builds again when they differ; redis-py's shared-context cache is keyed
by the same signatures, so unchanged files cost one stat each.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import RedisSSLContext, SSLConnection
from redis.asyncio.sentinel import SentinelManagedSSLConnection

Signature = tuple[tuple[str, int, int, int] | None, ...]


class FreshSSLContext(RedisSSLContext):
    __slots__ = ("_signature",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._signature: Signature | None = None

    def get(self) -> ssl.SSLContext:
        signature = files_signature(self.certfile, self.keyfile, self.ca_certs, self.ca_path)
        if signature != self._signature:
            self.context = None
            self._signature = signature
        return super().get()


def files_signature(*paths: str | None) -> Signature:
    return tuple(_signature(path) for path in paths)


def _signature(path: str | None) -> tuple[str, int, int, int] | None:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None  # the build that follows reports it
    return (path, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _freshen(connection: SSLConnection) -> None:
    """The connection's TLS settings, as redis-py parsed them, in a context that follows
    its files (redis-py keeps them on ``ssl_context``; tests/test_certificates.py fails
    without this)."""
    given = connection.ssl_context
    connection.ssl_context = FreshSSLContext(
        keyfile=given.keyfile,
        certfile=given.certfile,
        cert_reqs=given.cert_reqs,
        include_verify_flags=given.include_verify_flags,
        exclude_verify_flags=given.exclude_verify_flags,
        ca_certs=given.ca_certs,
        ca_data=given.ca_data,
        ca_path=given.ca_path,
        check_hostname=given.check_hostname,
        min_version=given.min_version,
        ciphers=given.ciphers,
        password=given.password,
    )


class FreshSSLConnection(SSLConnection):
    """A TLS connection to a Redis node whose context follows its files."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _freshen(self)


class FreshSentinelSSLConnection(SentinelManagedSSLConnection):
    """The same, to the master or a replica the Sentinels name."""

    def __init__(self, **options: Any) -> None:
        # redis-py leaves this constructor unannotated in some releases (worker/store/typed.py).
        init: Callable[..., None] = super().__init__
        init(**options)
        _freshen(self)
