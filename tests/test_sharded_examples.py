"""The sharded load test as shipped: compose's loadtest-shard and loadtest-merge services and
k8s/jobs/loadtest's Indexed Job and merge Job, their shell commands run as written against a
local cluster.

Only what needs Docker or Kubernetes is adapted, as tests/test_topology.py does: the target
(compose's lb, the Ingress host) becomes the local cluster, the reports volume a scratch
folder, and the sizes shrink to fit two cores (the replicas' and the pods' variables are set
as compose --scale and the Indexed Job set them).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ws_counter.tools.cluster import LocalCluster

from .conftest import seconds
from .deploy import ROOT, compose, render_kustomization

pytestmark = pytest.mark.cluster

CLUSTER_WORKERS = 2
SHARDS = 3


def shrunk(command: str, reports: Path) -> str:
    """The command at a size for this machine, writing its reports under ``reports``."""
    for flag, value in (
        ("--clients", "60"),
        ("--counters", "6"),
        ("--rate", "60"),
        ("--duration", "3"),
        ("--processes", "1"),
    ):
        command = re.sub(rf"{flag} \d+", f"{flag} {value}", command)
    return command.replace("/reports", str(reports))


def run_all(commands: list[tuple[str, dict[str, str]]]) -> list[subprocess.CompletedProcess[str]]:
    """Each command in sh at once, as the replicas or pods run; every one's outcome."""
    venv = str(Path(sys.executable).parent)
    started = [
        subprocess.Popen(
            ["sh", "-c", command],
            env={**os.environ, "PATH": f"{venv}:{os.environ['PATH']}", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command, env in commands
    ]
    done = []
    for process, (command, _) in zip(started, commands, strict=True):
        output, _ = process.communicate(timeout=seconds(120))
        done.append(subprocess.CompletedProcess(command, process.returncode, output))
    return done


def assert_merged_correct(merge: subprocess.CompletedProcess[str]) -> None:
    assert merge.returncode == 0, merge.stdout
    assert f"{SHARDS} shards of one run, judged as one" in merge.stdout
    assert "CORRECT" in merge.stdout


def test_compose_shards_claim_their_indexes_and_merge_as_one_run(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    services = compose()["services"]
    shard_command = services["loadtest-shard"]["command"][0].replace("$$", "$")
    merge_command = services["loadtest-merge"]["command"][0].replace("$$", "$")
    command = shrunk(shard_command, tmp_path).replace("ws://lb:8080/", cluster.url)
    command = command.replace("loadtest ", "loadtest --loopback-only ", 1)
    run = {"SHARD_RUN": "compose-run", "SHARDS": str(SHARDS)}
    shards = run_all([(command, {**run, "HOSTNAME": f"replica-{n}"}) for n in range(SHARDS)])
    assert [shard.returncode for shard in shards] == [0] * SHARDS, [s.stdout for s in shards]
    claimed = sorted(re.findall(r"shard (\d)/3 of run", "".join(s.stdout for s in shards)))
    assert claimed == ["0", "1", "2"]
    (merge,) = run_all([(shrunk(merge_command, tmp_path), run)])
    assert_merged_correct(merge)


def job_command(document: dict[str, Any]) -> tuple[str, dict[str, str]]:
    (container,) = document["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["sh", "-c"]
    return container["args"][0], {v["name"]: v["value"] for v in container.get("env", [])}


def test_the_indexed_job_and_its_merge_job_count_exactly(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    resources = render_kustomization(ROOT / "k8s" / "jobs" / "loadtest")
    (job,) = [r for r in resources if r["kind"] == "Job"]
    assert job["spec"]["completionMode"] == "Indexed"
    count = job["spec"]["completions"]
    assert f'--shard "$JOB_COMPLETION_INDEX/{count}"' in job_command(job)[0]
    command, env = job_command(job)
    # The pods as the Indexed Job starts them, shrunk to SHARDS of them here.
    command = shrunk(command, tmp_path).replace(f"/{count}", f"/{SHARDS}")
    command = command.replace("loadtest ", "loadtest --loopback-only ", 1)
    env["TARGET"] = cluster.url
    pods = run_all([(command, {**env, "JOB_COMPLETION_INDEX": str(n)}) for n in range(SHARDS)])
    assert [pod.returncode for pod in pods] == [0] * SHARDS, [p.stdout for p in pods]
    reports = sorted((tmp_path / env["RUN"]).glob("*.json"))
    assert [json.loads(path.read_text())["shard"]["index"] for path in reports] == [0, 1, 2]
    merge_job = yaml.safe_load((ROOT / "k8s" / "jobs" / "loadtest" / "merge-job.yaml").read_text())
    merge_command, merge_env = job_command(merge_job)
    (merge,) = run_all([(shrunk(merge_command, tmp_path), merge_env)])
    assert_merged_correct(merge)
