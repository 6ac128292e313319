"""A backup taken under load and restored into an empty Redis holds every acknowledged
increment up to the backup's point: the runbook of docs/operations.md, "Backups and
deletion", run as written against a Redis made by ``ws-counter make-secrets``."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from tools.processes import Child, free_port

from .conftest import WorkerProcess, seconds
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
