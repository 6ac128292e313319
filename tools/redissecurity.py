"""TLS and ACL users for the redis-server processes the tools start, as in production.

A throwaway CA signs one certificate that every node serves (for
``localhost`` and ``127.0.0.1``). Each node takes TLS only (``--port 0``),
for clients, replication and the cluster bus alike, and knows two users:

* ``admin``, with every right, for the tools' redis-cli and for replication;
* the worker's user, with exactly ``worker.store.acl.WORKER_ACL_RULES``.

The default user is off, so nothing reaches Redis without a password.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from worker.store.acl import acl_line

from .certs import Authority

WORKER_USER = "wsc-worker"
ADMIN_USER = "admin"


class RedisSecurity:
    def __init__(self, directory: Path) -> None:
        self.authority = Authority(directory)
        self.ca = self.authority.cert
        self.server = self.authority.issue("redis")
        self.admin_password = secrets.token_hex(16)
        self.worker_password = secrets.token_hex(16)
        self.worker_password_file = directory / "worker-password"
        self.worker_password_file.write_text(self.worker_password + "\n")
        self.worker_password_file.chmod(0o600)

    def server_args(self, port: int) -> tuple[str, ...]:
        """redis-server arguments: TLS on ``port`` (and no plain port), and the users."""
        worker_user = acl_line(WORKER_USER, self.worker_password).split()[1:]
        return (
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(self.server.cert), "--tls-key-file", str(self.server.key)),
            *("--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "optional"),
            *("--tls-replication", "yes", "--tls-cluster", "yes"),
            *("--user", "default", "off"),
            *("--user", ADMIN_USER, "on", f">{self.admin_password}", "~*", "&*", "+@all"),
            *("--user", *worker_user),
            *("--masteruser", ADMIN_USER, "--masterauth", self.admin_password),
        )

    def cli_args(self) -> tuple[str, ...]:
        """redis-cli arguments to reach such a node as the admin."""
        return (
            *("--tls", "--cacert", str(self.ca)),
            *("--user", ADMIN_USER, "--pass", self.admin_password, "--no-auth-warning"),
        )

    def worker_env(self) -> dict[str, str]:
        """A worker's environment for such nodes: TLS with the CA, the least-privilege user."""
        return {
            "REDIS_TLS": "true",
            "REDIS_TLS_CA_FILE": str(self.ca),
            "REDIS_USERNAME": WORKER_USER,
            "REDIS_PASSWORD_FILE": str(self.worker_password_file),
        }
