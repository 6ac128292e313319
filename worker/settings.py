"""Worker settings: one frozen dataclass, built by a pure function.

Each setting is declared once, in ``SETTINGS``, with its environment variable,
its command-line flag, its type, its default and its help text. The command
line, ``--help``, docs/protocol.md and ``load_settings`` all read that table.
Flags win over the environment; nothing reads the environment at import time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class SettingsError(ValueError):
    """A setting has an invalid value; the message names the variable or flag."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_master_name: str = "mymaster"
    redis_timeout: float = 2.0
    redis_replica_acks: int = 0
    max_message_bytes: int = 4096
    max_connections: int = 20000
    max_pending_increments: int = 64
    open_timeout: float = 10.0
    ping_interval: float = 20.0
    slow_client_timeout: float = 30.0
    send_buffer_bytes: int = 16384
    drain_delay: float = 0.0
    drain_timeout: float = 5.0
    dedup_ttl: int = 86400
    compression: bool = False
    reuse_port: bool = False
    log_format: str = "json"
    log_level: str = "info"
    allowed_origins: tuple[str, ...] = ()
    rate_limit: float = 100.0
    rate_burst: int = 200
    # repr=False: settings get logged, secrets must not be.
    jwt_secret: str = field(default="", repr=False)
    jwt_secret_file: str = ""

    @property
    def close_timeout(self) -> float:
        """Seconds a closing handshake may take before the connection is dropped."""
        return min(5.0, self.drain_timeout)


@dataclass(frozen=True, slots=True)
class Setting:
    field: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return value


def _non_negative(what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a non-negative {what}")
        return value

    return parse


_seconds = _non_negative("number of seconds")


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


def _origins(text: str) -> tuple[str, ...]:
    """Parse ``https://a.example,https://b.example:8443`` (empty: no Origin check)."""
    origins = tuple(filter(None, (part.strip().rstrip("/") for part in text.split(","))))
    for origin in origins:
        scheme, sep, host = origin.partition("://")
        if not sep or scheme not in {"http", "https"} or not host or "/" in host:
            raise ValueError(f"{origin!r} is not an origin like https://example.com")
    return origins


def parse_secret(text: str) -> str:
    # HS256 keys shorter than the hash add no strength and PyJWT warns on them.
    if text and len(text.encode()) < 32:
        raise ValueError("must be at least 32 bytes; generate one with: openssl rand -hex 32")
    return text


def _sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``host:port,host:port`` (an empty string means no Sentinel)."""
    addresses = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{item!r} is not host:port")
        addresses.append((host.strip("[]"), _port(port)))
    return tuple(addresses)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", "WS_HOST", "--host", str, "address to listen on", "HOST"),
    Setting("port", "WS_PORT", "--port", _port, "port to listen on", "PORT"),
    Setting(
        "redis_url",
        "REDIS_URL",
        "--redis-url",
        str,
        "Redis to keep totals in (redis:// or rediss://; ignored with Sentinel)",
        "URL",
    ),
    Setting(
        "redis_sentinels",
        "REDIS_SENTINELS",
        "--redis-sentinels",
        _sentinels,
        "Sentinel addresses host:port,host:port; when set the master is found through them",
        "ADDRS",
    ),
    Setting(
        "redis_master_name",
        "REDIS_MASTER_NAME",
        "--redis-master-name",
        str,
        "name of the master the Sentinels watch",
        "NAME",
    ),
    Setting(
        "redis_timeout",
        "REDIS_TIMEOUT",
        "--redis-timeout",
        _seconds,
        "seconds to wait for Redis to connect or answer before reporting it unavailable",
        "SECONDS",
    ),
    Setting(
        "redis_replica_acks",
        "REDIS_REPLICA_ACKS",
        "--redis-replica-acks",
        _non_negative_int,
        "replicas that must confirm an increment (Redis WAIT) before it is acknowledged;"
        " with Sentinel, 1 keeps acknowledged increments through a failover",
        "N",
    ),
    Setting(
        "max_message_bytes",
        "WS_MAX_MESSAGE_BYTES",
        "--max-message-bytes",
        _positive_int,
        "largest client frame accepted; larger ones close the connection with 1009",
        "BYTES",
    ),
    Setting(
        "max_connections",
        "WS_MAX_CONNECTIONS",
        "--max-connections",
        _positive_int,
        "WebSocket connections per worker; handshakes beyond it get HTTP 503",
        "N",
    ),
    Setting(
        "max_pending_increments",
        "WS_MAX_PENDING_INCREMENTS",
        "--max-pending-increments",
        _positive_int,
        "unacknowledged increments per connection before the worker stops reading it",
        "N",
    ),
    Setting(
        "open_timeout",
        "WS_OPEN_TIMEOUT",
        "--open-timeout",
        _seconds,
        "seconds a client has to complete the opening handshake",
        "SECONDS",
    ),
    Setting(
        "ping_interval",
        "WS_PING_INTERVAL",
        "--ping-interval",
        _seconds,
        "seconds between keepalive pings (0 disables them)",
        "SECONDS",
    ),
    Setting(
        "slow_client_timeout",
        "WS_SLOW_CLIENT_TIMEOUT",
        "--slow-client-timeout",
        _seconds,
        "seconds a client may leave its send buffer full before it is closed with 1008",
        "SECONDS",
    ),
    Setting(
        "send_buffer_bytes",
        "WS_SEND_BUFFER_BYTES",
        "--send-buffer-bytes",
        _positive_int,
        "kernel send buffer per connection (SO_SNDBUF); beyond it a client counts as slow and"
        " gets only the newest total. Bounds the memory a client that stops reading can pin",
        "BYTES",
    ),
    Setting(
        "drain_delay",
        "WS_DRAIN_DELAY",
        "--drain-delay",
        _seconds,
        "on SIGTERM, seconds to keep serving with /readyz at 503 before closing clients",
        "SECONDS",
    ),
    Setting(
        "drain_timeout",
        "WS_DRAIN_TIMEOUT",
        "--drain-timeout",
        _seconds,
        "on SIGTERM, seconds to wait for clients to close before exiting anyway",
        "SECONDS",
    ),
    Setting(
        "dedup_ttl",
        "WS_DEDUP_TTL",
        "--dedup-ttl",
        _positive_int,
        "seconds an increment id is remembered, so that a retry is not applied twice",
        "SECONDS",
    ),
    Setting(
        "compression",
        "WS_COMPRESSION",
        "--compression",
        _boolean,
        "offer permessage-deflate (costs about 3x the memory per connection)",
        "BOOL",
    ),
    Setting(
        "reuse_port",
        "WS_REUSE_PORT",
        "--reuse-port",
        _boolean,
        "set SO_REUSEPORT so that several workers share one port (no load balancer)",
        "BOOL",
    ),
    Setting(
        "log_format",
        "WS_LOG_FORMAT",
        "--log-format",
        _choice("json", "text"),
        "json: one JSON object per line; text: readable lines for development",
        "FORMAT",
    ),
    Setting(
        "log_level",
        "WS_LOG_LEVEL",
        "--log-level",
        _choice("debug", "info", "warning", "error"),
        "least severe log level written",
        "LEVEL",
    ),
    Setting(
        "allowed_origins",
        "WS_ALLOWED_ORIGINS",
        "--allowed-origins",
        _origins,
        "browser origins allowed to open WebSockets, comma-separated; when set, handshakes"
        " from other origins get HTTP 403 (clients that send no Origin are not browsers and pass)",
        "ORIGINS",
    ),
    Setting(
        "rate_limit",
        "WS_RATE_LIMIT",
        "--rate-limit",
        _non_negative("number"),
        "increments per second one connection may send on average (0: no limit);"
        " beyond it increments get a rate_limited error",
        "PER_SECOND",
    ),
    Setting(
        "rate_burst",
        "WS_RATE_BURST",
        "--rate-burst",
        _positive_int,
        "increments one connection may send at once before the rate limit applies",
        "N",
    ),
    Setting(
        "jwt_secret",
        "WS_JWT_SECRET",
        "--jwt-secret",
        parse_secret,
        "HMAC secret for HS256 tokens; when set every WebSocket needs a token"
        " (prefer the environment or WS_JWT_SECRET_FILE to a flag, which others can read)",
        "SECRET",
    ),
    Setting(
        "jwt_secret_file",
        "WS_JWT_SECRET_FILE",
        "--jwt-secret-file",
        str,
        "file holding the token secret (a mounted Docker or Kubernetes secret)",
        "PATH",
    ),
)


def load_settings(env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from the environment and already-parsed flags (flags win).

    ``flags`` maps field names to values given on the command line; None means
    the flag was not given. Flag values are strings, parsed like the environment.
    """
    flags = flags or {}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        flag_value = flags.get(setting.field)
        if flag_value is not None:
            source, raw = setting.flag, flag_value
        elif setting.env in env:
            source, raw = setting.env, env[setting.env]
        else:
            continue
        try:
            values[setting.field] = setting.parse(str(raw))
        except ValueError as exc:
            raise SettingsError(f"{source}: {raw!r} {exc}") from None
    return Settings(**values)
