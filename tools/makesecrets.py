"""``ws-counter make-secrets DIR``: what a deployment needs to run Redis with TLS and ACLs.

It writes, and keeps on later runs (so that restarting a deployment rotates
nothing):

* ``ca.crt`` and ``ca.key``: a CA of the deployment's own;
* ``redis.crt`` and ``redis.key``: Redis' certificate, for ``redis``,
  ``localhost``, ``127.0.0.1`` and every ``--redis-name``;
* ``front.pem``: HAProxy's certificate and key in one file, for
  ``localhost``, ``127.0.0.1``, ``lb``, ``lb-tls`` and every ``--front-name``;
* ``worker-password`` and ``admin-password``;
* ``users.acl``: Redis' ACL file. The default user may only PING (health
  checks, INFO for probes); ``admin`` may do anything; the worker's user gets exactly
  ``ws_counter.worker.store.acl.WORKER_ACL_RULES``. Passwords are stored hashed.
* ``redis.conf``: what every Redis node adds to its options (``redis-server
  /secrets/redis.conf ...``): TLS only, on 6379, for clients, replication and
  the cluster bus; the ACL file; how a replica logs in to its primary.
  ``--mounted-at`` is where the deployment mounts these files (/secrets).

Files that hold a key or a password are 0600 (certificates 0644).
docker-compose.yml runs it with ``--shared-volume`` as a one-shot service into
a volume that only the project's containers mount, each as a user of its own;
Kubernetes takes its files as Secrets (docs/operations.md, "Redis credentials
and TLS").
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ws_counter.worker.store.acl import WORKER_ACL_RULES

from .arguments import at_least
from .certs import CA_DAYS, LEAF_DAYS, Authority, not_after
from .redissecurity import ADMIN_USER, WORKER_USER, tls_only
from .redisserver import ClusterError

REDIS_NAMES = ("redis", "localhost", "127.0.0.1")
FRONT_NAMES = ("localhost", "127.0.0.1", "lb", "lb-tls")
# Health checks and probes log in as no one: the default user may PING and read INFO and
# CLUSTER INFO (a probe checks the replication link and the cluster's state), no key or
# channel.
DEFAULT_USER = "user default on nopass resetkeys resetchannels -@all +ping +info +cluster|info"


def add_make_secrets_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "make-secrets",
        help="write a CA, certificates, passwords and Redis' ACL file for a deployment",
        description="Write what a deployment needs to run Redis with TLS and ACLs: a CA,"
        " Redis' and HAProxy's certificates, passwords, Redis' ACL file and redis.conf."
        " Files already there are kept. Private keys, passwords, the ACL file and"
        " redis.conf are written readable by their owner only (0600), certificates 0644.",
    )
    parser.add_argument("directory", type=Path, help="where to write them (kept if there)")
    parser.add_argument(
        "--redis-name", action="append", default=[], help="another name for Redis' certificate"
    )
    parser.add_argument(
        "--front-name", action="append", default=[], help="another name for HAProxy's certificate"
    )
    parser.add_argument(
        "--shared-volume",
        action="store_true",
        help="make every file but ca.key readable by all (0644): for a volume that only"
        " the deployment's containers mount, each running as a user of its own"
        " (docker-compose.yml)",
    )
    parser.add_argument(
        "--days",
        type=at_least(1),
        default=LEAF_DAYS,
        help=f"how long Redis' and HAProxy's certificates last (default {LEAF_DAYS}; the CA"
        f" lasts {CA_DAYS} days, or longer than the certificates if --days is larger)",
    )
    parser.add_argument(
        "--renew",
        action="store_true",
        help="issue Redis' and HAProxy's certificates again from the kept CA, with new keys;"
        ' passwords, the ACL file and redis.conf are kept (docs/operations.md, "Certificates")',
    )
    parser.add_argument(
        "--rotate-ca",
        action="store_true",
        help="make a new CA and trust it beside the old one (ca.crt holds both); the next"
        " --renew signs with the new one, and --drop-old-ca ends the rotation"
        ' (docs/operations.md, "Certificates")',
    )
    parser.add_argument(
        "--drop-old-ca",
        action="store_true",
        help="trust only the current CA again, once every certificate is signed by it",
    )
    parser.add_argument(
        "--mounted-at",
        default="/secrets",
        help="where the containers see these files, for redis.conf (default /secrets)",
    )


def make_secrets_command(args: argparse.Namespace) -> int:
    try:
        written = make_secrets(
            args.directory,
            tuple(args.redis_name),
            tuple(args.front_name),
            args.mounted_at,
            shared_volume=args.shared_volume,
            certificates=Certificates(args.days, args.renew, args.rotate_ca, args.drop_old_ca),
        )
    except ClusterError as exc:  # openssl is missing
        print(f"ws-counter make-secrets: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ws-counter make-secrets: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"ws-counter make-secrets: openssl failed: {exc.stderr}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    for name in ("ca.crt", "redis.crt", "front.pem"):
        # The first certificate of each: the signing CA, or the leaf.
        print(f"{name} expires {not_after(args.directory / name):%Y-%m-%d %H:%M} UTC")
    print(f"{args.directory}: ready")
    return 0


@dataclass(frozen=True, slots=True)
class Certificates:
    """What a run does to the certificates beyond making missing ones: ``renew`` issues
    Redis' and HAProxy's again; ``rotate_ca`` makes a new CA trusted beside the old;
    ``drop_old_ca`` trusts the current one alone. Rotating the CA takes three runs, each
    rolled out before the next: rotate, renew, drop."""

    days: int = LEAF_DAYS
    renew: bool = False
    rotate_ca: bool = False
    drop_old_ca: bool = False


def make_secrets(
    directory: Path,
    redis_names: tuple[str, ...] = (),
    front_names: tuple[str, ...] = (),
    mounted_at: str = "/secrets",
    *,
    shared_volume: bool = False,
    certificates: Certificates | None = None,
) -> list[Path]:
    """Write what is missing in ``directory``, and change the certificates as
    ``certificates`` says; the paths written."""
    certificates = certificates or Certificates()
    days, renew = certificates.days, certificates.renew
    rotate_ca, drop_old_ca = certificates.rotate_ca, certificates.drop_old_ca
    directory.mkdir(parents=True, exist_ok=True)
    before = {path: path.stat().st_mtime_ns for path in directory.iterdir()}
    existed = (directory / "ca.crt").exists()
    authority = Authority(directory, "ws-counter deployment CA", days=days)
    if rotate_ca and existed:
        authority.rotate()
    if drop_old_ca:
        authority.drop_old()
    if renew:
        for leaf in ("redis.crt", "redis.key", "front.pem", "front.crt", "front.key"):
            (directory / leaf).unlink(missing_ok=True)
    if not (directory / "redis.crt").exists():
        authority.issue("redis", tuple(dict.fromkeys((*REDIS_NAMES, *redis_names))))
    front = directory / "front.pem"
    if not front.exists():
        names = tuple(dict.fromkeys((*FRONT_NAMES, *front_names)))
        authority.issue("front", names).pem_bundle(front)
    passwords = {user: _password(directory / f"{role}-password")
                 for user, role in ((WORKER_USER, "worker"), (ADMIN_USER, "admin"))}  # fmt: skip
    acl = directory / "users.acl"
    if not acl.exists():
        acl.write_text(acl_file(passwords[WORKER_USER], passwords[ADMIN_USER]))
    config = directory / "redis.conf"
    if not config.exists():
        config.write_text(redis_config(Path(mounted_at), passwords[ADMIN_USER]))
    for path in directory.iterdir():
        path.chmod(file_mode(path.name, shared_volume=shared_volume))
    for leftover in directory.glob("*.csr"):
        leftover.unlink()
    for leftover in directory.glob("*.ext"):
        leftover.unlink()
    return sorted(path for path in directory.iterdir()
                  if before.get(path) != path.stat().st_mtime_ns)  # fmt: skip


def file_mode(name: str, *, shared_volume: bool) -> int:
    """Certificates are public (0644). Everything else holds a key, a password or a hash
    of one (0600), except in a shared volume: one that only the deployment's containers
    mount, each running as a user of its own (Redis, HAProxy, the worker), which must
    all read them. The CA's key signs nothing after this and stays with whoever ran it."""
    if name == "ca.key":
        return 0o600
    if name.endswith(".crt") or shared_volume:
        return 0o644
    return 0o600


def acl_file(worker_password: str, admin_password: str) -> str:
    """Redis' ACL file: the default user for probes, the admin, the worker's least privilege."""
    return "\n".join(
        (
            DEFAULT_USER,
            f"user {ADMIN_USER} on #{_sha256(admin_password)} ~* &* +@all",
            f"user {WORKER_USER} on #{_sha256(worker_password)} {WORKER_ACL_RULES}",
            "",
        )
    )


def redis_config(mounted_at: Path, admin_password: str) -> str:
    """redis.conf lines for a node that takes TLS only and the ACL file, and whose replicas
    log in to their primary as the admin."""
    tls = tls_only(6379, mounted_at / "redis.crt", mounted_at / "redis.key", mounted_at / "ca.crt")
    directives = [
        *tls,
        # Clients prove who they are with a password; no client certificates.
        ("tls-auth-clients", "no"),
        ("aclfile", str(mounted_at / "users.acl")),
        ("masteruser", ADMIN_USER),
        ("masterauth", admin_password),
    ]
    return "".join(f"{key} {value}\n" for key, value in directives)


def _password(path: Path) -> str:
    if not path.exists():
        path.write_text(secrets.token_hex(24) + "\n")
    return path.read_text().strip()


def _sha256(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()
