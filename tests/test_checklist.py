"""docs/operations.md's production checklist, run as written and in order.

Each ``sh`` block of the checklist runs in bash, in one scratch directory, with
two stand-ins first on PATH (everything else is real: ws-counter make-secrets,
openssl, python3 with PyJWT):

* ``kubectl`` (tests/checklist/kubectl.py) renders with the real kubectl and
  refuses what an API server would: a Secret before its namespace, a pod
  mounting a Secret or key nobody made, a rollout of nothing applied;
* ``ws-counter loadtest`` reaches the Ingress' host as a local worker that
  requires tokens signed with the checklist's own jwt-secret.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import StartWorker, seconds
from .deploy import ROOT, find_resource, render_kustomization

pytestmark = pytest.mark.cluster

CHECKLIST = ROOT / "docs" / "operations.md"
KUBECTL_STANDIN = ROOT / "tests" / "checklist" / "kubectl.py"


def checklist_blocks() -> list[str]:
    text = CHECKLIST.read_text()
    section = text[text.index("## Production checklist") :]
    section = section[: section.index("The security settings")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [re.sub(r"(?m)^ {3}", "", block) for block in blocks]


def ingress_host() -> str:
    ingress = find_resource(render_kustomization(ROOT / "k8s"), "Ingress", "ws-counter")
    host: str = ingress["spec"]["rules"][0]["host"]
    return host


def standins(directory: Path) -> Path:
    """kubectl and ws-counter stand-ins in ``directory``, to go first on PATH."""
    directory.mkdir()
    real_tool = Path(sys.executable).parent / "ws-counter"
    (directory / "kubectl").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{KUBECTL_STANDIN}" "$@"\n'
    )
    # The Ingress' host is the worker the test started ($CHECKLIST_WORKER_PORT).
    front = f"wss://{ingress_host()}"
    (directory / "ws-counter").write_text(
        "#!/bin/bash\n"
        "if [[ $1 == loadtest ]]; then\n"
        f'  url="ws://127.0.0.1:$CHECKLIST_WORKER_PORT${{2#{front}}}"\n'
        f'  [[ $2 == {front}/* ]] || {{ echo "not the Ingress host: $2" >&2; exit 3; }}\n'
        f'  exec "{real_tool}" loadtest "$url" "${{@:3}}" --loopback-only --json report.json\n'
        "fi\n"
        f'exec "{real_tool}" "$@"\n'
    )
    for tool in ("kubectl", "ws-counter"):
        (directory / tool).chmod(0o755)
    return directory


def test_the_production_checklist_runs_as_written(
    tmp_path: Path, start_worker: StartWorker
) -> None:
    """Namespace before Secrets, every Secret the manifests mount made with its keys, the
    objects applied, and a load test on a counter of its own with a token: CORRECT."""
    blocks = checklist_blocks()
    assert len(blocks) >= 4, "the checklist lost its commands"
    # A clone's files the checklist reads; what it writes stays out of the checkout.
    work = tmp_path / "clone"
    shutil.copytree(ROOT / "k8s", work / "k8s")
    venv_bin = Path(sys.executable).parent
    path = [str(standins(tmp_path / "bin")), str(venv_bin), os.environ["PATH"]]
    env = {
        **os.environ,
        "PATH": os.pathsep.join(path),
        "CHECKLIST_STATE": str(tmp_path / "cluster.json"),
        "CHECKLIST_REAL_KUBECTL": str(venv_bin / "kubectl"),
        "COLUMNS": "200",
    }
    worker = None
    for block in blocks:
        if "ws-counter loadtest" in block:
            # The deployment as the checklist made it: tokens signed with its jwt-secret.
            assert (work / "jwt-secret").stat().st_mode & 0o077 == 0, "jwt-secret is readable"
            worker = start_worker(WS_JWT_SECRET_FILE=str(work / "jwt-secret"), WS_RATE_LIMIT="0")
            env["CHECKLIST_WORKER_PORT"] = str(worker.port)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds(180),
            check=False,
        )
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
    assert worker is not None, "the checklist has no load test"
    state = json.loads((tmp_path / "cluster.json").read_text())
    assert "ws-counter/ws-counter-auth" in state["secrets"], "tokens were not turned on"
    report = json.loads((work / "report.json").read_text())
    assert report["correct"] is True and report["passed"] is True
    assert report["parameters"]["counter"] == "checklist"
    assert "REDACTED" in report["parameters"]["url"], "the load test carried no token"


def test_the_front_namespaces_the_checklist_names_are_the_policys() -> None:
    """Step 7 names the namespaces the worker-ingress policy admits, by the label Kubernetes
    sets to a namespace's name (which no one can relabel)."""
    policy = find_resource(render_kustomization(ROOT / "k8s"), "NetworkPolicy", "worker-ingress")
    selectors = [
        peer["namespaceSelector"]["matchLabels"] for peer in policy["spec"]["ingress"][0]["from"]
    ]
    names = {labels["kubernetes.io/metadata.name"] for labels in selectors}
    text = CHECKLIST.read_text()
    for name in names:
        assert f"`{name}`" in text[text.index("## Production checklist") :]
