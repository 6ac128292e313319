"""TLS and ACL users for the redis-server processes the tools start, as in production.

A throwaway CA signs one certificate that every node serves (for
``localhost`` and ``127.0.0.1``). Each node takes TLS only (``--port 0``),
for clients, replication and the cluster bus alike, and knows two users:

* ``admin``, with every right, for the tools' redis-cli, replication and
  the Sentinels;
* the worker's user, with exactly ``ws_counter.worker.store.acl.WORKER_ACL_RULES``.

The default user is off, so nothing reaches Redis without a password.
Sentinels (``sentinel_config``) take TLS only too, and a password of their own.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ws_counter.worker.store.acl import acl_line

from .certs import Authority

WORKER_USER = "wsc-worker"
ADMIN_USER = "admin"


Directive = tuple[str, str]


def tls_only(port: int, cert: Path, key: Path, ca: Path) -> list[Directive]:
    """redis.conf directives of a node that takes TLS only, on ``port``, for clients,
    replication and the cluster bus alike (the shipped redis.conf and the tools' nodes)."""
    return [
        ("port", "0"),
        ("tls-port", str(port)),
        ("tls-cert-file", str(cert)),
        ("tls-key-file", str(key)),
        ("tls-ca-cert-file", str(ca)),
        ("tls-replication", "yes"),
        ("tls-cluster", "yes"),
    ]


def as_flags(directives: list[Directive]) -> tuple[str, ...]:
    """The same directives as redis-server's command-line flags."""
    return tuple(part for key, value in directives for part in (f"--{key}", value))


def config_as_flags(config: str, port: int) -> tuple[str, ...]:
    """A redis.conf's directives (one ``key value`` a line) as flags, listening for TLS on
    ``port``: how a shipped configuration runs on a loopback port here."""
    directives = [tuple(line.split(" ", 1)) for line in config.splitlines() if line]
    return as_flags([(key, str(port) if key == "tls-port" else value) for key, value in directives])


class RedisSecurity:
    def __init__(self, directory: Path) -> None:
        self.authority = Authority(directory)
        self.ca = self.authority.cert
        self.server = self.authority.issue("redis")
        self.admin_password = secrets.token_hex(16)
        self.worker_password = secrets.token_hex(16)
        self.sentinel_password = secrets.token_hex(16)
        self.worker_password_file = directory / "worker-password"
        self.worker_password_file.write_text(self.worker_password + "\n")
        self.worker_password_file.chmod(0o600)

    def server_args(self, port: int) -> tuple[str, ...]:
        """redis-server arguments: TLS on ``port`` (and no plain port), and the users."""
        worker_user = acl_line(WORKER_USER, self.worker_password).split()[1:]
        tls = tls_only(port, self.server.cert, self.server.key, self.ca)
        return (
            *as_flags([*tls, ("tls-auth-clients", "optional")]),
            *("--user", "default", "off"),
            *("--user", ADMIN_USER, "on", f">{self.admin_password}", "~*", "&*", "+@all"),
            *("--user", *worker_user),
            *("--masteruser", ADMIN_USER, "--masterauth", self.admin_password),
        )

    def sentinel_config(self, port: int) -> str:
        """sentinel.conf lines: TLS on ``port`` (to clients, other Sentinels and Redis) and
        the Sentinels' own password; ``sentinel_auth`` follows the monitor line."""
        return (
            f"port 0\ntls-port {port}\n"
            f"tls-cert-file {self.server.cert}\ntls-key-file {self.server.key}\n"
            f"tls-ca-cert-file {self.ca}\ntls-auth-clients optional\ntls-replication yes\n"
            f"requirepass {self.sentinel_password}\n"
            f"sentinel sentinel-pass {self.sentinel_password}\n"
        )

    def sentinel_auth(self, master_name: str) -> str:
        """The lines that follow a ``sentinel monitor`` line: how to log in to that master."""
        return (
            f"sentinel auth-user {master_name} {ADMIN_USER}\n"
            f"sentinel auth-pass {master_name} {self.admin_password}\n"
        )

    def cli_args(self, *, sentinel: bool = False) -> tuple[str, ...]:
        """redis-cli arguments to reach such a node as the admin (or a Sentinel)."""
        login = (
            ("--pass", self.sentinel_password)
            if sentinel
            else ("--user", ADMIN_USER, "--pass", self.admin_password)
        )
        return ("--tls", "--cacert", str(self.ca), *login, "--no-auth-warning")

    def sentinel_worker_env(self) -> dict[str, str]:
        """What a worker adds to ``worker_env`` for such Sentinels."""
        return {"REDIS_SENTINEL_TLS": "true", "REDIS_SENTINEL_PASSWORD": self.sentinel_password}

    def worker_env(self) -> dict[str, str]:
        """A worker's environment for such nodes: TLS with the CA, the least-privilege user."""
        return {
            "REDIS_TLS": "true",
            "REDIS_TLS_CA_FILE": str(self.ca),
            "REDIS_USERNAME": WORKER_USER,
            "REDIS_PASSWORD_FILE": str(self.worker_password_file),
        }
