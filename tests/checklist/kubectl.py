"""A stand-in for kubectl that renders what a real cluster would be asked to do.

tests/test_checklist.py puts it first on PATH while it runs the production
checklist. It keeps the cluster's state (namespaces, Secrets and their keys,
applied objects) in the JSON file $CHECKLIST_STATE and refuses what a real
API server would refuse: a Secret in a namespace that does not exist yet, a
pod that mounts a Secret (or a key of one) nobody made, a rollout of a
Deployment never applied. Rendering is the real kubectl's, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

STATE = Path(os.environ["CHECKLIST_STATE"])
REAL = os.environ["CHECKLIST_REAL_KUBECTL"]


def load() -> dict[str, Any]:
    if STATE.exists():
        state: dict[str, Any] = json.loads(STATE.read_text())
        return state
    return {"namespaces": [], "secrets": {}, "objects": []}


def refuse(message: str) -> None:
    print(f"Error from server: {message}", file=sys.stderr)
    raise SystemExit(1)


def real(*argv: str) -> str:
    done = subprocess.run([REAL, *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr, end="")
        raise SystemExit(done.returncode)
    return done.stdout


def namespace_of(argv: list[str]) -> tuple[str | None, list[str]]:
    if len(argv) >= 2 and argv[0] == "-n":
        return argv[1], argv[2:]
    return None, argv


def secrets_used(template: dict[str, Any]) -> list[tuple[str, list[str], bool]]:
    """(Secret, keys, optional) a pod template mounts or reads."""
    used = []
    spec = template["spec"]
    for volume in spec.get("volumes", []):
        secret = volume.get("secret")
        if secret:
            keys = [item["key"] for item in secret.get("items", [])]
            used.append((secret["secretName"], keys, bool(secret.get("optional"))))
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                used.append((ref["name"], [ref["key"]], bool(ref.get("optional"))))
    return used


def apply(state: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    # kubectl apply sends Namespaces first.
    for item in objects:
        if item["kind"] == "Namespace":
            state["namespaces"].append(item["metadata"]["name"])
    for item in objects:
        namespace = item["metadata"].get("namespace")
        if namespace is not None and namespace not in state["namespaces"]:
            refuse(f'namespaces "{namespace}" not found')
        template = item.get("spec", {}).get("template")
        if item["kind"] in ("Deployment", "StatefulSet") and template:
            for name, keys, optional in secrets_used(template):
                have = state["secrets"].get(f"{namespace}/{name}")
                if have is None and not optional:
                    refuse(f"{item['metadata']['name']} mounts the Secret {name}: none made")
                missing = [key for key in keys if have is not None and key not in have]
                if missing:
                    refuse(f"the Secret {name} lacks {missing}")
        state["objects"].append(
            {"kind": item["kind"], "name": item["metadata"]["name"], "namespace": namespace}
        )
        print(f"{item['kind'].lower()}/{item['metadata']['name']} created")


def main(argv: list[str]) -> None:
    state = load()
    namespace, rest = namespace_of(argv)
    if rest[:2] == ["apply", "-f"]:
        apply(state, list(yaml.safe_load_all(Path(rest[2]).read_text())))
    elif rest[:2] == ["apply", "-k"]:
        apply(state, [o for o in yaml.safe_load_all(real("kustomize", rest[2])) if o])
    elif rest[:3] == ["create", "secret", "generic"]:
        if namespace not in state["namespaces"]:
            refuse(f'namespaces "{namespace}" not found')
        rendered = yaml.safe_load(
            real("-n", str(namespace), *rest, "--dry-run=client", "-o", "yaml")
        )
        name = rendered["metadata"]["name"]
        state["secrets"][f"{namespace}/{name}"] = sorted(rendered["data"])
        print(f"secret/{name} created")
    elif rest[:2] == ["rollout", "status"]:
        kind, _, name = rest[2].partition("/")
        applied = {(o["kind"], o["name"], o["namespace"]) for o in state["objects"]}
        if ("Deployment", name, namespace) not in applied or kind != "deploy":
            refuse(f'deployments.apps "{name}" not found')
        print(f'deployment "{name}" successfully rolled out')
    else:
        refuse(f"the checklist test does not know kubectl {' '.join(argv)}")
    STATE.write_text(json.dumps(state))


if __name__ == "__main__":
    main(sys.argv[1:])
