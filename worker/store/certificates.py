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

# Certificate ("redis", "ca: <subject CN> <serial>") -> when it expires, Unix seconds.
EXPIRY: dict[str, float] = {}


def observe(connection: AbstractConnection | None) -> None:
    """Note the expiry of the certificates ``connection`` verified (none on plain TCP)."""
    tls = _ssl_object(connection)
    if tls is None:
        return
    peer = tls.getpeercert()
    if peer:
        EXPIRY["redis"] = ssl.cert_time_to_seconds(str(peer["notAfter"]))
    # The CAs trusted now replace those trusted before (a rotation drops the old one).
    for name in [name for name in EXPIRY if name.startswith("ca: ")]:
        del EXPIRY[name]
    for authority in _configured_authorities(connection):
        name = f"ca: {_common_name(authority)} {authority.get('serialNumber', '?')}"
        EXPIRY[name] = ssl.cert_time_to_seconds(str(authority["notAfter"]))


def _configured_authorities(connection: AbstractConnection | None) -> list[dict[str, Any]]:
    """The CAs of REDIS_TLS_CA_FILE as the connection read it: not the system's, which
    the context trusts too and which a deployment does not renew."""
    settings: Any = getattr(connection, "ssl_context", None)
    ca_file = getattr(settings, "ca_certs", None)
    if not ca_file:
        return []
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        bare.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError):
        return []  # being replaced right now: the next connect reads it again
    return bare.get_ca_certs()


def _ssl_object(connection: AbstractConnection | None) -> ssl.SSLObject | ssl.SSLSocket | None:
    # redis-py keeps the connection's asyncio StreamWriter as ``_writer`` (pinned by
    # tests/test_certificates.py against the installed release: no metric without it).
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
