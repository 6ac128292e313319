"""Redis as production runs it: TLS only, client certificates, ACL users.

One real redis-server takes only TLS, asks for a client certificate, has its
default user off and knows the worker's least-privilege user
(``ws_counter.worker.store.acl``). The worker does its whole job as that user, the
user can do nothing else, and every misconfiguration a user can make is
answered with the setting to fix: in the log at start and on /readyz.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis import exceptions as redis_errors

from ws_counter.tools.certs import Certificate
from ws_counter.tools.cluster import worker_argv, worker_env
from ws_counter.tools.makesecrets import make_secrets
from ws_counter.tools.processes import Child, free_port
from ws_counter.tools.redissecurity import ADMIN_USER, WORKER_USER, RedisSecurity, config_as_flags
from ws_counter.tools.redisserver import start_redis_server
from ws_counter.worker.store.acl import WORKER_ACL_RULES, acl_line
from ws_counter_client import connect

from .conftest import WorkerProcess, http_get, seconds
from .deploy import ROOT, find_resource, render_kustomization
from .sentinel import SentinelSet
from .syncredis import pubsub_of, run_command


@dataclass
class SecureRedis:
    security: RedisSecurity
    port: int
    client_cert: Certificate
    child: Child

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def worker_env(self, **changes: str) -> dict[str, str]:
        """A worker's settings for this Redis, with ``changes`` ("" removes one)."""
        env = {
            **self.security.worker_env(),
            "REDIS_TLS_CERT_FILE": str(self.client_cert.cert),
            "REDIS_TLS_KEY_FILE": str(self.client_cert.key),
            **changes,
        }
        return {name: value for name, value in env.items() if value}

    def admin(self) -> redis.Redis:
        return self.login(ADMIN_USER, self.security.admin_password)

    def login(self, user: str, password: str) -> redis.Redis:
        return redis.Redis(
            port=self.port,
            username=user,
            password=password,
            ssl=True,
            ssl_ca_certs=str(self.security.ca),
            ssl_certfile=str(self.client_cert.cert),
            ssl_keyfile=str(self.client_cert.key),
            decode_responses=True,
        )


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    directory = tmp_path_factory.mktemp("secure-redis")
    security = RedisSecurity(directory / "tls")
    port = free_port()
    # Stricter than the local cluster: a client certificate is required.
    extra = (*security.server_args(port), "--tls-auth-clients", "yes")
    child = start_redis_server(port, directory / "data", extra=extra)
    client_cert = security.authority.issue("worker", ("ws-counter-worker",))
    try:
        yield SecureRedis(security, port, client_cert, child)
    finally:
        child.stop()


@pytest.fixture
def start_secure_worker(secure_redis: SecureRedis) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(redis_url: str | None = None, wait_ready: bool = True, **env: str) -> WorkerProcess:
        settings = secure_redis.worker_env(**env)
        worker = WorkerProcess(redis_url or secure_redis.url, settings)
        started.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in started:
        worker.stop()


def test_the_least_privilege_user_runs_increments_fan_out_and_the_http_api(
    start_secure_worker: Callable[..., WorkerProcess],
) -> None:
    """Two workers as the ACL user over TLS with a client certificate: sessions on both,
    fan-out from one to the other, the HTTP API's POST and GET; the total is exact."""
    first, second = start_secure_worker(), start_secure_worker()

    async def scenario() -> tuple[int, int]:
        async with (
            connect(first.url, counter="secure") as a,
            connect(second.url, counter="secure") as b,
        ):
            for n in range(1, 41):
                await (a if n % 2 else b).increment(n)
            status, body = await asyncio.to_thread(_post, first.http, "secure", 1000)
            assert status == 200, body
            # Every client, on either worker, ends at the newest total.
            async with asyncio.timeout(seconds(10)):
                async for total in b.totals():
                    if total.total == 1820:
                        break
            return status, total.total

    status, total = asyncio.run(scenario())
    assert (status, total) == (200, 1820)
    request = urllib.request.Request(
        f"{second.http}/counters/secure", headers={"Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=seconds(5)) as response:
        assert json.loads(response.read())["total"] == 1820


def _post(base: str, counter: str, by: int) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{base}/counters/{counter}/increments",
        data=json.dumps({"by": by}).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": "secure-1"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=seconds(5)) as response:
        return response.status, response.read().decode()


# Commands the worker's user must not run, and keys and channels outside wsc:.
FORBIDDEN: list[tuple[str, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("ACL", "LIST"),
    ("SCRIPT", "FLUSH"),
    ("SHUTDOWN", "NOSAVE"),
    ("REPLICAOF", "NO", "ONE"),
    ("BGSAVE",),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("SET", "outside", "1"),
    ("GET", "outside"),
    ("DEL", "wsc:{x}"),
    ("PUBLISH", "outside", "x"),
    ("EVAL", "return redis.call('SET', 'outside', '1')", "0"),
    ("EVAL", "return redis.call('FLUSHALL')", "0"),
]


@pytest.mark.parametrize("command", FORBIDDEN, ids=lambda c: " ".join(c[:2]))
def test_the_workers_credentials_cannot_run(
    secure_redis: SecureRedis, command: tuple[str, ...]
) -> None:
    worker = secure_redis.login(WORKER_USER, secure_redis.security.worker_password)
    # Inside a script Redis refuses with its own text and no NOPERM code.
    with pytest.raises(redis_errors.ResponseError, match=r"no permissions|script can't"):
        run_command(worker, *command)
    worker.close()


def test_the_workers_credentials_subscribe_only_to_its_channels(secure_redis: SecureRedis) -> None:
    worker = secure_redis.login(WORKER_USER, secure_redis.security.worker_password)
    pubsub = pubsub_of(worker)
    pubsub.subscribe("wsc:{ok}:updates")
    assert pubsub.get_message(timeout=seconds(5))["type"] == "subscribe"
    with pytest.raises(redis_errors.NoPermissionError):
        pubsub.subscribe("outside")
        pubsub.get_message(timeout=seconds(5))
    pubsub.close()
    worker.close()


def test_the_shipped_acl_line_is_the_one_the_docs_print() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    assert acl_line(WORKER_USER, "<password>") in docs
    assert WORKER_ACL_RULES in docs


# What a user gets wrong, and what the worker says: (name, settings changed, what /readyz
# and the log say). "" removes a setting.
MISCONFIGURATIONS: list[tuple[str, dict[str, str], str]] = [
    ("wrong password", {"REDIS_PASSWORD_FILE": "", "REDIS_PASSWORD": "wrong"},
     "Redis refused the credentials"),
    ("no password", {"REDIS_PASSWORD_FILE": ""}, "check REDIS_USERNAME and REDIS_PASSWORD"),
    ("default user", {"REDIS_USERNAME": ""}, "check REDIS_USERNAME and REDIS_PASSWORD"),
    ("no client certificate", {"REDIS_TLS_CERT_FILE": "", "REDIS_TLS_KEY_FILE": ""},
     "check REDIS_TLS (is that port TLS?) and REDIS_TLS_CERT_FILE"),
    ("system CAs only", {"REDIS_TLS_CA_FILE": ""},
     "set REDIS_TLS_CA_FILE to the CA that signed it"),
    ("no TLS", {"REDIS_TLS": "false"}, "if it is one, set REDIS_TLS=true"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "says"), [m[1:] for m in MISCONFIGURATIONS],
                         ids=[m[0] for m in MISCONFIGURATIONS])  # fmt: skip
def test_a_misconfiguration_names_the_setting_to_fix(
    secure_redis: SecureRedis,
    start_secure_worker: Callable[..., WorkerProcess],
    changes: dict[str, str],
    says: str,
) -> None:
    url = secure_redis.url.replace("rediss://", "redis://") if "REDIS_TLS" in changes else None
    worker = start_secure_worker(url, wait_ready=False, **changes)
    logged = _first_trouble(worker)
    assert says in str(logged["msg"]), logged
    status, body = http_get(f"{worker.http}/readyz")
    assert status == 503 and says in body, body


def _first_trouble(worker: WorkerProcess) -> dict[str, object]:
    """The first line the worker logs about what is wrong with Redis."""
    assert worker.child is not None
    line = worker.child.wait_for_line(
        lambda text: '"redis_misconfigured"' in text or '"redis_lost"' in text,
        seconds(10),
    )
    document: dict[str, object] = json.loads(line)
    return document


def test_a_certificate_for_another_name_is_refused_unless_told(
    tmp_path: Path, secure_redis: SecureRedis, start_secure_worker: Callable[..., WorkerProcess]
) -> None:
    """A Redis whose certificate names only ``localhost``, reached as 127.0.0.1."""
    security = secure_redis.security
    named = security.authority.issue("localhost-only", ("localhost",))
    port = free_port()
    extra = [
        *security.server_args(port),
        *("--tls-cert-file", str(named.cert), "--tls-key-file", str(named.key)),
    ]
    child = start_redis_server(port, tmp_path / "data", extra=extra)
    try:
        worker = start_secure_worker(f"rediss://127.0.0.1:{port}/0", wait_ready=False)
        logged = _first_trouble(worker)
        assert "REDIS_TLS_CHECK_HOSTNAME=false" in str(logged["msg"]), logged
        # Told not to check the name (the CA is still checked), it works.
        start_secure_worker(f"rediss://127.0.0.1:{port}/0", REDIS_TLS_CHECK_HOSTNAME="false")
    finally:
        child.stop()


def test_a_missing_acl_permission_is_named_and_its_fix_is_noticed(
    secure_redis: SecureRedis, start_secure_worker: Callable[..., WorkerProcess]
) -> None:
    """A user that may subscribe but not run the worker's scripts: the worker says which
    permission is missing at start, and /readyz turns ready once an operator grants it."""
    admin = secure_redis.admin()
    rules = WORKER_ACL_RULES.replace(" +evalsha", "").replace(" +eval", "").split()
    admin.acl_setuser("narrow", enabled=True, passwords=["+narrow-pw"], reset_keys=True)
    run_command(admin, "ACL", "SETUSER", "narrow", *rules)
    try:
        worker = start_secure_worker(
            REDIS_USERNAME="narrow", REDIS_PASSWORD_FILE="", REDIS_PASSWORD="narrow-pw"
        )
        logged = worker.wait_for_event("redis_misconfigured")
        assert "give REDIS_USERNAME the ACL in docs/operations.md" in str(logged["msg"])
        assert "evalsha" in str(logged["msg"])
        status, body = http_get(f"{worker.http}/readyz")
        assert status == 503 and "lacks a permission" in body, body
        run_command(admin, "ACL", "SETUSER", "narrow", "+evalsha", "+eval")
        worker.wait_for_event("redis_access_ok", timeout=15)
        assert http_get(f"{worker.http}/readyz") == (200, "ready\n")
    finally:
        admin.acl_deluser("narrow")
        admin.close()


# Settings a worker refuses at start, before it touches Redis: (settings, what it prints).
REFUSED_AT_START: list[tuple[dict[str, str], str]] = [
    ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.crt"},
     "REDIS_TLS_CA_FILE: /nonexistent/ca.crt: No such file or directory"),
    ({"REDIS_TLS_KEY_FILE": ""}, "REDIS_TLS_CERT_FILE: also give REDIS_TLS_KEY_FILE"),
    ({"REDIS_PASSWORD_FILE": "/nonexistent/password"},
     "REDIS_PASSWORD_FILE: /nonexistent/password: No such file or directory"),
    ({"REDIS_PASSWORD_FILE": "", "REDIS_PASSWORD": "x"}, "give the password one way"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "says"), REFUSED_AT_START)
def test_settings_that_cannot_work_stop_the_worker_at_start(
    secure_redis: SecureRedis, changes: dict[str, str], says: str
) -> None:
    url = "rediss://user:pw@127.0.0.1:1/0" if "REDIS_PASSWORD" in changes else secure_redis.url
    env = worker_env(free_port(), url, **secure_redis.worker_env(**changes))
    result = subprocess.run(
        worker_argv(), env=env, capture_output=True, text=True, timeout=seconds(20), check=False
    )
    assert result.returncode == 2, result.stderr
    assert says in result.stderr


def test_sentinels_that_refuse_the_password_are_named(tmp_path: Path) -> None:
    """Sentinels with a password of their own, given the data nodes' password instead."""
    security = RedisSecurity(tmp_path / "tls")
    sentinels = SentinelSet(tmp_path / "redis", security).start()
    env = {**sentinels.worker_env(), "REDIS_SENTINEL_PASSWORD": security.admin_password}
    worker = WorkerProcess("redis://unused", env)
    try:
        worker.start(wait_ready=False)
        logged = worker.wait_for_event("redis_misconfigured")
        assert "check REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_PASSWORD" in str(logged["msg"])
        status, body = http_get(f"{worker.http}/readyz")
        assert status == 503 and "REDIS_SENTINEL_PASSWORD" in body, body
    finally:
        worker.stop()
        sentinels.stop()


def test_the_shipped_redis_probe_passes_on_a_redis_made_by_make_secrets(tmp_path: Path) -> None:
    """The Kubernetes readiness probe, run as written against a Redis configured by the
    redis.conf and ACL file of ws-counter make-secrets (the default user may PING)."""
    secrets = tmp_path / "secrets"
    make_secrets(secrets, mounted_at=str(secrets))
    port = free_port()
    options = config_as_flags((secrets / "redis.conf").read_text(), port)
    statefulset = find_resource(render_kustomization(ROOT / "k8s"), "StatefulSet", "redis")
    probe = statefulset["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    shell, flag, script = probe["exec"]["command"]
    script = script.replace("/secrets", str(secrets)).replace("redis-cli", f"redis-cli -p {port}")
    child = start_redis_server(port, tmp_path / "data", extra=options)
    try:
        ready = subprocess.run([shell, flag, script], timeout=seconds(10), check=False)
    finally:
        child.stop()
    gone = subprocess.run([shell, flag, script], timeout=seconds(10), check=False)
    assert (ready.returncode, gone.returncode != 0) == (0, True)


@pytest.mark.parametrize("shared", [False, True], ids=["own-disk", "shared-volume"])
def test_make_secrets_keeps_keys_and_passwords_private(tmp_path: Path, shared: bool) -> None:
    """Keys, passwords, the ACL file and redis.conf are 0600 and certificates 0644, unless
    --shared-volume (compose's volume, read by containers of different users) opens them."""
    make_secrets(tmp_path, shared_volume=shared)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    secret = ["ca.key", "redis.key", "front.pem", "worker-password", "admin-password"]
    secret += ["users.acl", "redis.conf"]
    assert modes["ca.key"] == 0o600
    for name in secret[1:]:
        assert modes[name] == (0o644 if shared else 0o600), name
    for name in ("ca.crt", "redis.crt"):
        assert modes[name] == 0o644, name
