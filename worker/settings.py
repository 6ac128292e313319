"""Worker settings: one frozen dataclass, built by a pure function.

Each setting is declared once, as a field of ``Settings``: its default, type,
environment variable, command-line flag, parser and help together. The command
line (``add_arguments``), ``--help``, docs/protocol.md (a test checks it) and
``load_settings`` all read those declarations. Flags win over the environment;
nothing reads the environment at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import SettingsError


@dataclass(frozen=True, slots=True)
class Setting:
    """How one field of Settings is given: its variable, flag, parser and help."""

    field: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    help: str
    metavar: str = "VALUE"


@dataclass(frozen=True, slots=True)
class Kind:
    """What a setting holds: its parser, and the word ``--help`` shows for its value."""

    parse: Callable[[str], Any]
    metavar: str


def setting(default: Any, env: str, kind: Kind, help: str, *, secret: bool = False) -> Any:
    """A Settings field with its declaration; ``secret`` keeps the value out of repr and logs."""
    declared = Setting("", env, "", kind.parse, help, kind.metavar)
    return dataclasses.field(default=default, repr=not secret, metadata={_KEY: declared})


_KEY = "ws_counter.setting"


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("is not a whole number") from None


def whole_at_least(least: int, most: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from ``least`` to ``most``: the one range check of the
    worker's settings and of the tools' flags (tools/arguments.py). Its ValueError says
    what is wrong after the text, which the caller names."""

    def parse(text: str) -> int:
        value = whole_number(text)
        if value < least:
            raise ValueError(f"is less than {least}")
        if most is not None and value > most:
            raise ValueError(f"is more than {most}")
        return value

    return parse


_positive_int = whole_at_least(1)
_non_negative_int = whole_at_least(0)
_port = whole_at_least(0, 65535)


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


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a fraction from 0 to 1")
    return value


def parse_secret(text: str) -> str:
    # HS256 keys shorter than the hash add no strength and PyJWT warns on them.
    if text and len(text.encode()) < 32:
        raise ValueError("must be at least 32 bytes; generate one with: openssl rand -hex 32")
    return text


def _addresses(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``host:port,host:port`` (an empty string means none)."""
    addresses = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{item!r} is not host:port")
        addresses.append((host.strip("[]"), _port(port)))
    return tuple(addresses)


# What a setting holds: how its text is parsed and what --help calls it.
HOST = Kind(str, "HOST")
PORT = Kind(_port, "PORT")
URL = Kind(str, "URL")
ADDRESSES = Kind(_addresses, "ADDRS")
NAME = Kind(str, "NAME")
SECONDS = Kind(_seconds, "SECONDS")
COUNT_OR_ZERO = Kind(_non_negative_int, "N")
BYTES = Kind(_positive_int, "BYTES")
COUNT = Kind(_positive_int, "N")
WHOLE_SECONDS = Kind(_positive_int, "SECONDS")
BOOL = Kind(_boolean, "BOOL")
LOG_FORMAT = Kind(_choice("json", "text"), "FORMAT")
LOG_LEVEL = Kind(_choice("debug", "info", "warning", "error"), "LEVEL")
AUTH = Kind(_choice("tokens", "off"), "MODE")
ORIGINS = Kind(_origins, "ORIGINS")
PER_SECOND = Kind(_non_negative("number"), "PER_SECOND")
PER_MINUTE = Kind(_fraction, "FRACTION")
SECRET = Kind(parse_secret, "SECRET")
PASSWORD = Kind(str, "PASSWORD")
PATH = Kind(str, "PATH")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How the worker reaches Redis: which Redis, and with what credentials and TLS.

    Declared like every other setting; ``Settings`` holds these and the rest.
    """

    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        "REDIS_URL",
        URL,
        "Redis to keep totals in (redis:// or rediss://; ignored with Sentinel)",
    )
    redis_sentinels: tuple[tuple[str, int], ...] = setting(
        (),
        "REDIS_SENTINELS",
        ADDRESSES,
        "Sentinel addresses host:port,host:port; when set the master is found through them",
    )
    redis_cluster_nodes: tuple[tuple[str, int], ...] = setting(
        (),
        "REDIS_CLUSTER_NODES",
        ADDRESSES,
        "seed nodes of a Redis Cluster, host:port,host:port; when set each counter lives on"
        " the shard that owns its slot, with sharded pub/sub (not with REDIS_URL or Sentinel)",
    )
    redis_master_name: str = setting(
        "mymaster", "REDIS_MASTER_NAME", NAME, "name of the master the Sentinels watch"
    )
    redis_timeout: float = setting(
        2.0,
        "REDIS_TIMEOUT",
        SECONDS,
        "seconds to wait for Redis to connect or answer before reporting it unavailable",
    )
    redis_replica_acks: int = setting(
        0,
        "REDIS_REPLICA_ACKS",
        COUNT_OR_ZERO,
        "replicas that must confirm an increment (Redis WAIT) before it is acknowledged;"
        " with Sentinel, 1 keeps acknowledged increments through a failover",
    )
    redis_username: str = setting(
        "",
        "REDIS_USERNAME",
        NAME,
        "ACL user the worker logs in to Redis as (empty: the default user); the least"
        " privilege it needs is the ACL line in docs/operations.md",
    )
    redis_password: str = setting(
        "",
        "REDIS_PASSWORD",
        PASSWORD,
        "password of that user (prefer REDIS_PASSWORD_FILE or the environment to a flag)",
        secret=True,
    )
    redis_password_file: str = setting(
        "", "REDIS_PASSWORD_FILE", PATH, "file holding the Redis password (a mounted secret)"
    )
    redis_tls: bool = setting(
        False,
        "REDIS_TLS",
        BOOL,
        "talk to Redis (every node of a cluster, the master Sentinel names) over TLS;"
        " a rediss:// REDIS_URL turns it on too",
    )
    redis_tls_ca_file: str = setting(
        "",
        "REDIS_TLS_CA_FILE",
        PATH,
        "CA certificates (PEM) Redis' certificate must chain to (none: the system's)",
    )
    redis_tls_cert_file: str = setting(
        "",
        "REDIS_TLS_CERT_FILE",
        PATH,
        "client certificate (PEM) for a Redis that asks for one (tls-auth-clients)",
    )
    redis_tls_key_file: str = setting(
        "", "REDIS_TLS_KEY_FILE", PATH, "private key (PEM) of REDIS_TLS_CERT_FILE"
    )
    redis_tls_check_hostname: bool = setting(
        True,
        "REDIS_TLS_CHECK_HOSTNAME",
        BOOL,
        "refuse a Redis whose certificate does not name the host or address connected to",
    )
    redis_sentinel_username: str = setting(
        "", "REDIS_SENTINEL_USERNAME", NAME, "ACL user for the Sentinels (empty: none)"
    )
    redis_sentinel_password: str = setting(
        "",
        "REDIS_SENTINEL_PASSWORD",
        PASSWORD,
        "the Sentinels' own password (Sentinel's requirepass), which may differ from Redis'",
        secret=True,
    )
    redis_sentinel_password_file: str = setting(
        "",
        "REDIS_SENTINEL_PASSWORD_FILE",
        PATH,
        "file holding the Sentinels' password (a mounted secret)",
    )
    redis_sentinel_tls: bool = setting(
        False,
        "REDIS_SENTINEL_TLS",
        BOOL,
        "talk to the Sentinels over TLS, with the REDIS_TLS_* files (Sentinel's tls-port)",
    )


@dataclass(frozen=True, slots=True)
class Settings(RedisSettings):
    """Everything a worker can be told; each field declares its variable, kind and help.

    ``setting(default, variable, kind, help)``; the flag is the field's name
    (``redis_url``: ``--redis-url``).
    """

    host: str = setting("127.0.0.1", "WS_HOST", HOST, "address to listen on")
    port: int = setting(8000, "WS_PORT", PORT, "port to listen on")
    max_message_bytes: int = setting(
        4096,
        "WS_MAX_MESSAGE_BYTES",
        BYTES,
        "largest client frame accepted (larger ones close the connection with 1009), and"
        " largest HTTP API request body (larger ones get 413)",
    )
    max_connections: int = setting(
        20000,
        "WS_MAX_CONNECTIONS",
        COUNT,
        "connections per worker, WebSocket and plain HTTP together; beyond it, HTTP 503",
    )
    max_pending_increments: int = setting(
        64,
        "WS_MAX_PENDING_INCREMENTS",
        COUNT,
        "unacknowledged increments per connection before the worker stops reading it",
    )
    open_timeout: float = setting(
        10.0,
        "WS_OPEN_TIMEOUT",
        SECONDS,
        "seconds a client has to complete the opening handshake, or to send an HTTP request"
        " whole; idle keep-alive HTTP connections are closed after it",
    )
    ping_interval: float = setting(
        20.0, "WS_PING_INTERVAL", SECONDS, "seconds between keepalive pings (0 disables them)"
    )
    slow_client_timeout: float = setting(
        30.0,
        "WS_SLOW_CLIENT_TIMEOUT",
        SECONDS,
        "seconds a client may leave its send buffer full before it is closed with 1008",
    )
    send_buffer_bytes: int = setting(
        4096,
        "WS_SEND_BUFFER_BYTES",
        BYTES,
        "kernel send buffer per connection (SO_SNDBUF); beyond it a client counts as slow and"
        " gets only the newest total. Bounds the memory a client that stops reading can pin;"
        " smaller keeps fewer stale totals queued (docs/performance.md measured 4, 16, 64 KiB)",
    )
    drain_delay: float = setting(
        0.0,
        "WS_DRAIN_DELAY",
        SECONDS,
        "on SIGTERM, seconds to keep serving with /readyz at 503 before closing clients",
    )
    drain_spread: float = setting(
        0.0,
        "WS_DRAIN_SPREAD",
        SECONDS,
        "on SIGTERM, after the drain delay, seconds over which clients are closed with 1012,"
        " evenly, so that they do not all reconnect at once (0: all at once)",
    )
    rebalance_rate: float = setting(
        1.0,
        "WS_REBALANCE_RATE",
        PER_MINUTE,
        "a worker holding more connections than the fleet's mean (over 10%) closes at most"
        " this fraction of them a minute with 1012, so that added workers take their"
        " share: its clients reconnect through the balancer (0: never)",
    )
    drain_timeout: float = setting(
        5.0,
        "WS_DRAIN_TIMEOUT",
        SECONDS,
        "on SIGTERM, seconds to wait for clients to close before exiting anyway",
    )
    dedup_ttl: int = setting(
        300,
        "WS_DEDUP_TTL",
        WHOLE_SECONDS,
        "seconds an increment id is remembered, so that a retry is not applied twice;"
        " each id costs Redis about 180 bytes for that long (sessions cost far less)",
    )
    session_ttl: int = setting(
        86400,
        "WS_SESSION_TTL",
        WHOLE_SECONDS,
        "seconds an idle session is remembered (each use starts the time again); a resend"
        " after that is refused as out_of_order, never applied twice",
    )
    session_window: int = setting(
        64,
        "WS_SESSION_WINDOW",
        COUNT,
        "outcomes a session keeps, so that a resend gets its original total; at least"
        " WS_MAX_PENDING_INCREMENTS",
    )
    publish_rate: int = setting(
        25,
        "WS_PUBLISH_RATE",
        COUNT_OR_ZERO,
        "most times a second one counter's state is published to the workers; a state"
        " held back goes out when its 1/N s is over (0: after every increment)",
    )
    compression: bool = setting(
        False,
        "WS_COMPRESSION",
        BOOL,
        "offer permessage-deflate (costs about 3x the memory per connection)",
    )
    reuse_port: bool = setting(
        False,
        "WS_REUSE_PORT",
        BOOL,
        "set SO_REUSEPORT so that several workers share one port (no load balancer)",
    )
    log_format: str = setting(
        "json",
        "WS_LOG_FORMAT",
        LOG_FORMAT,
        "json: one JSON object per line; text: readable lines for development",
    )
    log_level: str = setting("info", "WS_LOG_LEVEL", LOG_LEVEL, "least severe log level written")
    allowed_origins: tuple[str, ...] = setting(
        (),
        "WS_ALLOWED_ORIGINS",
        ORIGINS,
        "browser origins allowed to open WebSockets, comma-separated; when set, handshakes"
        " from other origins get HTTP 403 (clients that send no Origin are not browsers and pass)",
    )
    rate_limit: float = setting(
        100.0,
        "WS_RATE_LIMIT",
        PER_SECOND,
        "increments per second one connection (WebSocket or kept-alive HTTP) may send on"
        " average (0: no limit); beyond it increments get a rate_limited error (HTTP 429)",
    )
    rate_burst: int = setting(
        200,
        "WS_RATE_BURST",
        COUNT,
        "increments one connection may send at once before the rate limit applies",
    )
    auth: str = setting(
        "tokens",
        "WS_AUTH",
        AUTH,
        "tokens: every WebSocket and API request needs a token, and `serve` refuses to start"
        " without WS_JWT_SECRET; off: no tokens, anyone who reaches the port may read and add"
        " to every counter (a local cluster, a network of your own)",
    )
    jwt_secret: str = setting(
        "",
        "WS_JWT_SECRET",
        SECRET,
        "HMAC secret for HS256 tokens; when set every WebSocket needs a token"
        " (prefer the environment or WS_JWT_SECRET_FILE to a flag, which others can read)",
        secret=True,
    )
    jwt_secret_file: str = setting(
        "",
        "WS_JWT_SECRET_FILE",
        PATH,
        "file holding the token secret (a mounted Docker or Kubernetes secret)",
    )

    def __post_init__(self) -> None:
        check_invariants({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @property
    def close_timeout(self) -> float:
        """Seconds a closing handshake may take before the connection is dropped."""
        return min(5.0, self.drain_timeout)


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(
        field.metadata[_KEY], field=field.name, flag="--" + field.name.replace("_", "-")
    )
    for field in dataclasses.fields(Settings)
)


def load_settings(env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from the environment and already-parsed flags (flags win).

    ``flags`` maps field names to values given on the command line; None means
    the flag was not given. Flag values are strings, parsed like the environment.
    A secret named by WS_JWT_SECRET_FILE is read here, like any other setting.
    """
    flags = flags or {}
    values: dict[str, Any] = {}
    for declared in SETTINGS:
        flag_value = flags.get(declared.field)
        if flag_value is not None:
            source, raw = declared.flag, flag_value
        elif declared.env in env:
            source, raw = declared.env, env[declared.env]
        else:
            continue
        try:
            values[declared.field] = declared.parse(str(raw))
        except ValueError as exc:
            raise SettingsError(f"{source}: {raw!r} {exc}") from None
    for file_field, field, parse in SECRET_FILES:
        if values.get(file_field):
            values[field] = _read_secret_file(_env_of(file_field), values[file_field], parse)
    _check_readable(values, ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file"))
    return Settings(**values)


def check_invariants(values: Mapping[str, Any]) -> None:
    """What no combination of values may break (Settings checks it when made): each field's
    own range is its parser's."""
    # A Redis Cluster is reached by its nodes alone (with Sentinel, REDIS_URL is ignored).
    _exclusive(values, ("redis_url", "redis_cluster_nodes"))
    _exclusive(values, ("redis_sentinels", "redis_cluster_nodes"))
    if values.get("redis_password") and "@" in values.get("redis_url", "").partition("//")[2]:
        raise SettingsError("REDIS_URL and REDIS_PASSWORD: give the password one way, not both")
    _together(values, ("redis_tls_cert_file", "redis_tls_key_file"))
    if values["session_window"] < values["max_pending_increments"]:
        # Every increment a connection has in flight must be answerable with
        # its original total when the client resends it after a reconnect.
        raise SettingsError(
            f"WS_SESSION_WINDOW: {values['session_window']} is below WS_MAX_PENDING_INCREMENTS"
            f" ({values['max_pending_increments']})"
        )


def _exclusive(values: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    """At most one of ``fields`` given (set, and not to its default): they name different
    kinds of Redis."""
    given = [field for field in fields if values.get(field) not in ("", (), None, _default(field))]
    if len(given) > 1:
        names = " and ".join(declared.env for declared in SETTINGS if declared.field in given)
        raise SettingsError(f"{names}: give one way to reach Redis, not several")


def _together(values: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    """All of ``fields`` or none: one is useless without the others."""
    given = [field for field in fields if values.get(field)]
    if given and len(given) < len(fields):
        missing = [_env_of(field) for field in fields if field not in given]
        raise SettingsError(f"{_env_of(given[0])}: also give {' and '.join(missing)}")


def _default(field: str) -> Any:
    return next(f.default for f in dataclasses.fields(Settings) if f.name == field)


def _env_of(field: str) -> str:
    return next(declared.env for declared in SETTINGS if declared.field == field)


def _check_readable(values: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    """Files named by settings exist and can be read now, not at the first connection."""
    for field in fields:
        path = values.get(field)
        if not path:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise SettingsError(f"{_env_of(field)}: {path}: {exc.strerror}") from None


# Secrets that may come from a file instead (a mounted Docker or Kubernetes
# secret): the file's setting, the secret's, and how the secret is checked.
SECRET_FILES: tuple[tuple[str, str, Callable[[str], str]], ...] = (
    ("jwt_secret_file", "jwt_secret", parse_secret),
    ("redis_password_file", "redis_password", str),
    ("redis_sentinel_password_file", "redis_sentinel_password", str),
)


def _read_secret_file(env: str, path: str, parse: Callable[[str], str]) -> str:
    source = f"{env}: {path}"
    try:
        # A trailing newline (echo, most editors) is not part of the secret.
        secret = parse(Path(path).read_text().strip())
    except OSError as exc:
        raise SettingsError(f"{source}: {exc.strerror}") from None
    except ValueError as exc:
        raise SettingsError(f"{source}: the secret {exc}") from None
    if not secret:
        # An empty file would mean no tokens or no password at all: refuse it.
        raise SettingsError(f"{source}: the file is empty")
    return secret


def check_auth(settings: Settings) -> None:
    """SettingsError unless tokens are configured or explicitly turned off: a worker that
    serves every counter to anyone must be asked to, never a default."""
    secret = bool(settings.jwt_secret)
    if settings.auth == "tokens" and not secret:
        raise SettingsError(
            "WS_JWT_SECRET is not set, and tokens are required: set WS_JWT_SECRET or"
            " WS_JWT_SECRET_FILE, or WS_AUTH=off to serve every counter without tokens"
        )
    if settings.auth == "off" and secret:
        raise SettingsError("WS_AUTH=off and WS_JWT_SECRET: tokens on or off, not both")


def insecure_redis(settings: Settings) -> str | None:
    """A warning when Redis is reached across a network without TLS and without a password;
    None for TLS, a password, or a Redis on this host (local development)."""
    url = urlsplit(settings.redis_url)
    if settings.redis_tls or url.scheme == "rediss" or settings.redis_password or url.password:
        return None
    nodes = settings.redis_sentinels or settings.redis_cluster_nodes
    hosts = [host for host, _ in nodes] if nodes else [url.hostname or "localhost"]
    if all(_is_loopback(host) for host in hosts):
        return None
    return (
        "Redis is reached without TLS and without a password: anyone on its network can"
        " change every total. For local development only; docs/operations.md, 'Security"
        " checklist', has the settings"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, its help naming the variable and the default."""
    defaults = Settings()
    for declared in SETTINGS:
        shown = _shown(getattr(defaults, declared.field))
        parser.add_argument(
            declared.flag,
            dest=declared.field,
            metavar=declared.metavar,
            default=None,
            help=f"{declared.help} [env {declared.env}; default {shown}]",
        )


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags in parsed ``args`` (None where not given)."""
    return {declared.field: getattr(args, declared.field, None) for declared in SETTINGS}


def _shown(default: object) -> str:
    """A default as the environment variable would spell it."""
    if isinstance(default, tuple):
        parts = (":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in default)
        return ",".join(parts) or "none"
    return str(default) if default != "" else "none"
