"""A backup taken under load and restored into an empty Redis holds every acknowledged
increment up to the backup's point: the runbook of docs/operations.md, "Backups and
deletion", run as written against a Redis made by ``ws-counter make-secrets``."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from ws_counter.tools.cluster import ClusterOptions, LocalCluster
from ws_counter.tools.processes import Child, free_port
from ws_counter.tools.redisserver import start_redis_server

from .conftest import WorkerProcess, counter_state, seconds
from .loadrun import BackgroundLoadtest
from .secured import Admin, made_secrets, secured_worker, start_secured_redis, until

COUNTER = "backed-up"


def test_a_backup_under_load_restores_every_increment_acknowledged_before_it(
    tmp_path: Path,
) -> None:
    secrets = made_secrets(tmp_path)
    port = free_port()
    source = start_secured_redis(secrets, port, tmp_path / "source")
    worker = secured_worker(secrets, port)
    try:
        load = BackgroundLoadtest(
            worker.url, "--clients", "20", "--rate", "300", "--duration", "10",
            "--counter", COUNTER, json_path=tmp_path / "report.json",
        )  # fmt: skip
        load.wait_until_acking()
        # Everything acknowledged by now was applied by now: the backup must hold it.
        before = _total(worker)
        backup = tmp_path / "backup.rdb"
        Admin(secrets, port)("--rdb", str(backup))
        after = _total(worker)
        status, report = load.finish()
        assert status == 0 and report is not None and report["correct"], load.output
        assert report["expected_total"] > after > before > 0, (before, after)
    finally:
        worker.stop()
        source.stop()

    restored_port = free_port()
    restored = _restore(backup, tmp_path / "restored", secrets, restored_port)
    worker = secured_worker(secrets, restored_port)
    try:
        total = _total(worker)
        # The backup's point lies between the two reads around it (RPO: the backup's start).
        assert before <= total <= after, (before, total, after)
        assert _increment(worker, 3) == total + 3
    finally:
        worker.stop()
        restored.stop()


def _restore(backup: Path, data: Path, secrets: Path, port: int) -> Child:
    """docs/operations.md, "Restore": load the RDB with the AOF off, turn the AOF on
    (Redis writes it from memory), and restart as shipped."""
    data.mkdir()
    shutil.copy(backup, data / "dump.rdb")
    admin = Admin(secrets, port)
    loading = start_secured_redis(secrets, port, data, "--appendonly", "no")
    admin("config", "set", "appendonly", "yes")
    until(lambda: _aof_written(admin("info", "persistence")))
    loading.stop()
    return start_secured_redis(secrets, port, data)


def _aof_written(info: str) -> bool:
    fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
    return (
        fields.get("aof_enabled") == "1"
        and fields.get("aof_rewrite_in_progress") == "0"
        and fields.get("aof_rewrite_scheduled") == "0"
    )


def _total(worker: WorkerProcess) -> int:
    request = urllib.request.Request(
        f"{worker.http}/counters/{COUNTER}", headers={"Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=seconds(10)) as response:
        return int(json.loads(response.read())["total"])


def _increment(worker: WorkerProcess, by: int) -> int:
    request = urllib.request.Request(
        f"{worker.http}/counters/{COUNTER}/increments",
        data=json.dumps({"by": by}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=seconds(10)) as response:
        return int(json.loads(response.read())["total"])


CLUSTER_COUNTERS = 12


@pytest.mark.redis_cluster
def test_a_redis_cluster_backup_restores_every_counter_into_a_new_cluster(tmp_path: Path) -> None:
    """docs/operations.md for a Redis Cluster: ``redis-cli --cluster backup`` under load
    (an RDB of every primary), restored into a new, empty cluster with ``redis-cli
    --cluster import`` from a Redis that loaded each file. Each counter lives in one slot,
    so each restored total lies between the totals read before and after the backup."""
    source = LocalCluster(_cluster_options(tmp_path / "source")).start()
    try:
        assert source.redis_cluster is not None
        load = BackgroundLoadtest(
            source.url, "--clients", "24", "--rate", "300", "--duration", "10",
            "--counter", COUNTER, "--counters", str(CLUSTER_COUNTERS),
            json_path=tmp_path / "report.json",
        )  # fmt: skip
        load.wait_until_acking()
        before = _cluster_totals(source)
        backups = tmp_path / "backups"
        backups.mkdir()  # redis-cli writes into it, and makes none
        source.redis_cluster.cli(
            "--cluster", "backup", _any_node(source), str(backups), port=None, timeout=120
        )
        after = _cluster_totals(source)
        status, report = load.finish()
        assert status == 0 and report is not None and report["correct"], load.output
    finally:
        source.stop()
    files = sorted(backups.glob("*.rdb"))
    assert len(files) == 3, sorted(backups.iterdir())

    restored = LocalCluster(_cluster_options(tmp_path / "restored")).start()
    try:
        for index, backup in enumerate(files):
            _import_into(restored, backup, tmp_path / f"loaded-{index}")
        totals = _cluster_totals(restored)
        for counter in before:
            # The backup's point lies between the two reads around it.
            assert before[counter] <= totals[counter] <= after[counter], counter
        assert sum(totals.values()) > sum(before.values()) > 0
        counter = next(iter(totals))
        assert counter_state(restored, counter)["total"] == totals[counter]
    finally:
        restored.stop()


def _cluster_options(log_dir: Path) -> ClusterOptions:
    # The load test sends faster than a person types: WS_RATE_LIMIT=0.
    return ClusterOptions(
        workers=1, port=free_port(), haproxy=False, redis_cluster=3, redis_tls=True,
        log_dir=log_dir, worker_env={"WS_RATE_LIMIT": "0"},
    )  # fmt: skip


def _any_node(cluster: LocalCluster) -> str:
    assert cluster.redis_cluster is not None
    return f"127.0.0.1:{next(iter(cluster.redis_cluster.primary_ports()))}"


def _cluster_totals(cluster: LocalCluster) -> dict[str, int]:
    names = [f"{COUNTER}-{index}" for index in range(CLUSTER_COUNTERS)]
    return {name: int(counter_state(cluster, name)["total"]) for name in names}


def _import_into(cluster: LocalCluster, backup: Path, data: Path) -> None:
    """docs/operations.md, "Restore a Redis Cluster": a Redis of its own loads one
    primary's file, on loopback, in plain (redis-cli --cluster import reaches its source
    without TLS), and sends to the cluster over TLS with the node's certificate
    (tls-cluster); ``redis-cli --cluster import`` copies its keys into the cluster, each
    to the primary that owns its slot now, with its time to live."""
    nodes, security = cluster.redis_cluster, cluster.security
    assert nodes is not None and security is not None
    data.mkdir()
    shutil.copy(backup, data / "dump.rdb")
    port = free_port()
    loaded = start_redis_server(
        port, data,
        extra=("--bind", "127.0.0.1", "--appendonly", "no", "--save", "",
               "--tls-cluster", "yes", "--tls-cert-file", str(security.server.cert),
               "--tls-key-file", str(security.server.key),
               "--tls-ca-cert-file", str(security.ca)),
    )  # fmt: skip
    try:
        nodes.cli(
            "--cluster", "import", _any_node(cluster), "--cluster-from", f"127.0.0.1:{port}",
            "--cluster-copy", "--cluster-replace", port=None, timeout=120,
        )  # fmt: skip
    finally:
        loaded.stop()
