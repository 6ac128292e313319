"""When the certificates of the TLS links to Redis expire, as this worker last saw them.

An expired certificate takes Redis down for every new connection at once,
so the worker exports the expiry of what it verifies on each pub/sub
connect: Redis' own certificate and the CAs it trusts. The expiry alert
(deploy/prometheus/rules.yml, WsCounterRedisCertificateExpiring) reads it.
Kept at module level, as worker.tasks.FAILURES, so the store reports without
holding the metrics.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.asyncio.connection import AbstractConnection

# Certificate ("redis", "ca: <subject CN>") -> when it expires, Unix seconds.
EXPIRY: dict[str, float] = {}


def observe(connection: AbstractConnection | None) -> None:
    """Note the expiry of the certificates ``connection`` verified (none on plain TCP)."""
    tls = _ssl_object(connection)
    if tls is None:
        return
    peer = tls.getpeercert()
    if peer:
        EXPIRY["redis"] = ssl.cert_time_to_seconds(str(peer["notAfter"]))
    for authority in tls.context.get_ca_certs():
        EXPIRY[f"ca: {_common_name(authority)}"] = ssl.cert_time_to_seconds(
            str(authority["notAfter"])
        )


def _ssl_object(connection: AbstractConnection | None) -> ssl.SSLObject | ssl.SSLSocket | None:
    # redis-py keeps the connection's asyncio StreamWriter as ``_writer`` (pinned by
    # tests/test_tls.py against the installed release).
    writer: Any = getattr(connection, "_writer", None)
    if writer is None:
        return None
    found = writer.get_extra_info("ssl_object")
    return found if isinstance(found, ssl.SSLObject | ssl.SSLSocket) else None


def _common_name(certificate: dict[str, Any]) -> str:
    for entry in certificate.get("subject", ()):
        for key, value in entry:
            if key == "commonName":
                return str(value)
    return "?"
