"""Certificates that last, and their renewal under load with nothing lost.

``ws-counter make-secrets`` issues certificates that outlive a year; renewing
them (``--renew``) while clients increment leaves every total exact, and the
workers report the new expiry (ws_counter_redis_certificate_expiry_timestamp_seconds,
which the expiry alert reads).
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ws_counter.tools.certs import not_after
from ws_counter.tools.makesecrets import Certificates, make_secrets
from ws_counter.tools.processes import free_port
from ws_counter.tools.redissecurity import WORKER_USER

from .conftest import WorkerProcess, http_get, seconds
from .loadrun import BackgroundLoadtest
from .secured import Admin, made_secrets, secured_worker, start_secured_redis

A_YEAR = 365 * 24 * 3600


def test_every_certificate_make_secrets_issues_outlives_a_year(tmp_path: Path) -> None:
    make_secrets(tmp_path)
    for name in ("ca.crt", "redis.crt", "front.pem"):
        check = subprocess.run(
            ["openssl", "x509", "-noout", "-checkend", str(A_YEAR), "-in", str(tmp_path / name)],
            capture_output=True, text=True, timeout=seconds(30), check=False,
        )  # fmt: skip
        assert check.returncode == 0, f"{name}: {check.stdout}"


def test_make_secrets_days_and_renew_reissue_from_the_kept_ca(tmp_path: Path) -> None:
    first = make_secrets(tmp_path)
    names = ("ca.crt", "ca.key", "worker-password", "admin-password", "users.acl", "redis.conf")
    kept = {name: (tmp_path / name).read_bytes() for name in names}
    old_serial = _serial(tmp_path / "redis.crt")
    renewed = make_secrets(tmp_path, certificates=Certificates(days=400, renew=True))
    assert {path.name for path in renewed} >= {"redis.crt", "redis.key", "front.pem"}
    assert len(renewed) < len(first)
    assert all((tmp_path / name).read_bytes() == text for name, text in kept.items())
    assert _serial(tmp_path / "redis.crt") != old_serial
    expires = not_after(tmp_path / "redis.crt") - datetime.now(UTC)
    assert timedelta(days=399) < expires <= timedelta(days=400)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "redis.crt")],
        capture_output=True, text=True, timeout=seconds(30), check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr


def test_renewing_redis_certificate_under_load_loses_nothing(tmp_path: Path) -> None:
    """The runbook of docs/operations.md, "Certificates": renew, load the files into the
    running Redis with CONFIG SET, and drop its connections so that every worker link
    is made again on the new certificate, while clients increment."""
    secrets = made_secrets(tmp_path)
    port = free_port()
    redis = start_secured_redis(secrets, port, tmp_path / "data")
    admin = Admin(secrets, port)
    worker = secured_worker(secrets, port)
    try:
        before = _expiry_metric(worker)
        assert before == pytest.approx(not_after(secrets / "redis.crt").timestamp())
        load = BackgroundLoadtest(
            worker.url, "--clients", "20", "--rate", "200", "--duration", "12",
            "--counter", "renewed", json_path=tmp_path / "report.json",
        )  # fmt: skip
        load.wait_until_acking()
        make_secrets(secrets, mounted_at=str(secrets), certificates=Certificates(500, renew=True))
        reply = admin("config", "set", "tls-cert-file", str(secrets / "redis.crt"),
                      "tls-key-file", str(secrets / "redis.key"))  # fmt: skip
        assert reply.strip() == "OK", reply
        admin("client", "kill", "user", WORKER_USER)
        status, report = load.finish()
        assert status == 0, load.output
        assert report is not None and report["correct"] is True, load.output
        assert report["increments_acked"] > 0
        after = _expiry_metric(worker)
        assert after == pytest.approx(not_after(secrets / "redis.crt").timestamp())
        assert after < before  # 500 days from now, where the first had 800
    finally:
        worker.stop()
        redis.stop()


def _serial(cert: Path) -> str:
    argv = ["openssl", "x509", "-noout", "-serial", "-in", str(cert)]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def _expiry_metric(worker: WorkerProcess) -> float:
    status, body = http_get(f"{worker.http}/metrics")
    assert status == 200
    found = re.search(
        r'^ws_counter_redis_certificate_expiry_timestamp_seconds\{certificate="redis"\} (\S+)$',
        body, re.MULTILINE,
    )  # fmt: skip
    assert found, body
    return float(found.group(1))


def test_rotating_the_ca_under_load_loses_nothing(tmp_path: Path) -> None:
    """docs/operations.md, "Certificates": a new CA trusted beside the old, leaves renewed
    from it and loaded by Redis, the old CA dropped, while clients increment, with no
    worker restarted: each reconnect reads the CA file anew (worker/store/freshtls.py).
    Redis drops the workers' links after each step, so every step is verified."""
    secrets = made_secrets(tmp_path)
    port = free_port()
    redis = start_secured_redis(secrets, port, tmp_path / "data")
    admin = Admin(secrets, port)
    worker = secured_worker(secrets, port)
    old_cas = _trusted_cas(worker)
    load = BackgroundLoadtest(
        worker.url, "--clients", "20", "--rate", "200", "--duration", "15",
        "--counter", "rotated", json_path=tmp_path / "report.json",
    )  # fmt: skip
    steps = (Certificates(rotate_ca=True), Certificates(renew=True), Certificates(drop_old_ca=True))
    try:
        load.wait_until_acking()
        for step in steps:
            make_secrets(secrets, mounted_at=str(secrets), certificates=step)
            admin("config", "set", "tls-ca-cert-file", str(secrets / "ca.crt"),
                  "tls-cert-file", str(secrets / "redis.crt"),
                  "tls-key-file", str(secrets / "redis.key"))  # fmt: skip
            admin("client", "kill", "user", WORKER_USER)
        status, report = load.finish()
        assert status == 0, load.output
        assert report is not None and report["correct"] is True, load.output
        new_cas = _trusted_cas(worker)
        assert len(new_cas) == 1 and new_cas.isdisjoint(old_cas), (old_cas, new_cas)
    finally:
        worker.stop()
        redis.stop()


def _trusted_cas(worker: WorkerProcess) -> set[str]:
    status, body = http_get(f"{worker.http}/metrics")
    assert status == 200
    return set(re.findall(r'certificate="(ca: [^"]+)"', body))
