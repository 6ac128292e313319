"""``python -m ws_counter.tools.helmchart``: the Helm chart, made from the kustomize components.

The chart in deploy/helm/ws-counter renders the same objects as the
components (tests/test_helm.py compares them for every choice), so it is
written by this module, never by hand: every combination of the choices is
rendered with ``kubectl kustomize``, and each object becomes one template
whose branches depend only on the choices that change it (the worker
Deployment on the Redis mode, the HPA on the custom-metrics choice, ...).
What a chart user sets is left to values: the namespace (the release's),
the image, and the names of the existing Secrets.

    python -m ws_counter.tools.helmchart            write the chart
    python -m ws_counter.tools.helmchart --check    exit 1 if the chart is not what it would write

A tool of the repository: it reads k8s/ and writes deploy/helm/ of a checkout,
and needs the test extras (PyYAML, kubectl).
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
CHART = ROOT / "deploy" / "helm" / "ws-counter"
NAMESPACE = "ws-counter"
IMAGE = "registry.example.com/ws-counter:0.1.0"

# The choices (values key, their options), each option the components it adds.
DIMENSIONS: dict[str, dict[Any, tuple[str, ...]]] = {
    "redis.mode": {
        "single": ("redis-single",),
        "sentinel": ("redis-sentinel",),
        "cluster": ("redis-cluster",),
    },
    "front": {"ingress": ("ingress",), "gateway-api": ("gateway-api",)},
    "monitoring.enabled": {False: (), True: ("monitoring",)},
    "customMetricsHpa.enabled": {False: (), True: ("custom-metrics-hpa",)},
    "redis.tls": {"make-secrets": (), "cert-manager": ("cert-manager",)},
    "frontTls": {"secret": (), "cert-manager": ("front-certificate",)},
}
# Secret names a chart user may replace with Secrets of their own (values key, default).
SECRETS = {
    "ws-counter-auth": "auth.existingSecret",
    "ws-counter-redis": "redis.existingSecret",
    "ws-counter-redis-auth": "redis.sentinel.existingSecret",
}

Choice = tuple[Any, ...]  # one option per dimension, in DIMENSIONS' order


def choices() -> list[Choice]:
    """Every combination, but Sentinel with cert-manager: the Bitnami chart's Redis takes
    its certificates itself (its tls.existingSecret)."""
    every = [values_of(c) for c in itertools.product(*DIMENSIONS.values())]
    offered = [
        v for v in every if (v["redis.mode"], v["redis.tls"]) != ("sentinel", "cert-manager")
    ]
    return [tuple(v.values()) for v in offered]


def components_of(choice: Choice) -> list[str]:
    return [c for (_, options), o in zip(DIMENSIONS.items(), choice, strict=True)
            for c in options[o]]  # fmt: skip


def values_of(choice: Choice) -> dict[str, Any]:
    """``--set`` pairs for ``helm template`` that make this choice."""
    return dict(zip(DIMENSIONS, choice, strict=True))


def render(choice: Choice, kubectl: str) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` makes of the base and this choice's components."""
    with tempfile.TemporaryDirectory(prefix="ws-counter-chart-") as scratch:
        here = Path(scratch)
        document = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": NAMESPACE,
            "resources": [os.path.relpath(K8S / "base", here)],
            "components": [
                os.path.relpath(K8S / "components" / c, here) for c in components_of(choice)
            ],
        }
        (here / "kustomization.yaml").write_text(yaml.safe_dump(document))
        output = subprocess.run([kubectl, "kustomize", str(here)], capture_output=True,
                                text=True, check=True, timeout=120).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(output) if d]


def key_of(resource: Mapping[str, Any]) -> str:
    """The object's file name in the chart: kind and name, a generated ConfigMap's hash
    (which differs with its contents) dropped."""
    name = resource["metadata"]["name"]
    if resource["kind"] == "ConfigMap":
        name = re.sub(r"-[a-z0-9]{10}$", "", name)
    return f"{resource['kind'].lower()}-{name}"


@dataclass(frozen=True)
class Template:
    name: str
    # (the options of ``dimensions`` that select it, its text); absent elsewhere.
    branches: list[tuple[Choice, str]]
    dimensions: tuple[int, ...]


def templates(kubectl: str) -> list[Template]:
    texts: dict[str, dict[Choice, str]] = {}
    every = choices()
    for choice in every:
        for resource in render(choice, kubectl):
            texts.setdefault(key_of(resource), {})[choice] = to_template(resource)
    return [_template(name, variants, every) for name, variants in sorted(texts.items())]


def _template(name: str, variants: dict[Choice, str], every: list[Choice]) -> Template:
    """The fewest dimensions on which the object depends (its presence included)."""
    for size in range(len(DIMENSIONS) + 1):
        for dimensions in itertools.combinations(range(len(DIMENSIONS)), size):
            seen: dict[Choice, str | None] = {}
            if all(seen.setdefault(_project(c, dimensions), variants.get(c))
                   == variants.get(c) for c in every):  # fmt: skip
                branches = [(options, text) for options, text in seen.items() if text is not None]
                return Template(name, branches, dimensions)
    raise AssertionError("the full choice always determines the object")


def _project(choice: Choice, dimensions: tuple[int, ...]) -> Choice:
    return tuple(choice[d] for d in dimensions)


def to_template(resource: dict[str, Any]) -> str:
    """The object as template text: what the chart's values set, made expressions."""
    resource = _with_values(resource)
    text = yaml.safe_dump(resource, sort_keys=False, width=1000)
    # Braces of the object's own text (alert templates) stay literal.
    text = re.sub(r"\{\{|\}\}", lambda m: "{{`" + m.group(0) + "`}}", text)
    return (
        text.replace("__NAMESPACE__", "{{ .Release.Namespace }}")
        .replace("__IMAGE__", "{{ .Values.image.repository }}:{{ .Values.image.tag }}")
        .replace("__SECRET__auth.existingSecret", "{{ .Values.auth.existingSecret }}")
        .replace("__SECRET__redis.existingSecret", "{{ .Values.redis.existingSecret }}")
        .replace(
            "__SECRET__redis.sentinel.existingSecret",
            "{{ .Values.redis.sentinel.existingSecret }}",
        )
    )


def _with_values(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        out = {k: _with_values(v, k) for k, v in node.items()}
        if "namespace" in out and out.get("namespace") == NAMESPACE and "name" in out:
            out["namespace"] = "__NAMESPACE__"
        if out.get("image") == IMAGE:
            out["image"] = "__IMAGE__"
        for field in ("secretName", "name"):
            secret = out.get(field)
            if isinstance(secret, str) and secret in SECRETS and _names_a_secret(key, field):
                out[field] = "__SECRET__" + SECRETS[secret]
        return out
    if isinstance(node, list):
        return [_with_values(item, key) for item in node]
    return node


def _names_a_secret(parent: str, field: str) -> bool:
    """A Secret's name where a pod takes it: a volume's secretName, a secretKeyRef's name."""
    return field == "secretName" or parent == "secretKeyRef"


def condition(template: Template, options: Choice) -> str:
    tests = []
    for dimension, option in zip(template.dimensions, options, strict=True):
        key = list(DIMENSIONS)[dimension]
        value = f".Values.{key}"
        if isinstance(option, bool):
            tests.append(value if option else f"(not {value})")
        else:
            tests.append(f'(eq {value} "{option}")')
    if not tests:
        return "true"
    return tests[0] if len(tests) == 1 else f"and {' '.join(tests)}"


def template_text(template: Template) -> str:
    lines = [
        "{{- /* Generated by python -m ws_counter.tools.helmchart from k8s/: do not edit. */ -}}\n"
    ]
    for number, (options, text) in enumerate(template.branches):
        word = "if" if number == 0 else "else if"
        lines.append(f"{{{{- {word} {condition(template, options)} }}}}\n{text}")
    lines.append("{{- end }}\n")
    return "".join(lines)


# The choice choices() leaves out, refused rather than rendered as a partial deployment.
REFUSED = """\
{{- /* Generated by python -m ws_counter.tools.helmchart: do not edit. */ -}}
{{- if and (eq .Values.redis.mode "sentinel") (eq .Values.redis.tls "cert-manager") }}
{{- fail "redis.tls=cert-manager is for redis.mode single and cluster: the Bitnami chart's \
Redis of sentinel mode takes its certificates itself (its tls.existingSecret)" }}
{{- end }}
"""


def chart_files(kubectl: str) -> Iterator[tuple[str, str]]:
    for template in templates(kubectl):
        yield f"templates/{template.name}.yaml", template_text(template)
    yield "templates/validate.yaml", REFUSED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ws_counter.tools.helmchart", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if not (K8S / "base").is_dir():
        print(
            f"python -m ws_counter.tools.helmchart: no {K8S}/base: run it in a checkout",
            file=sys.stderr,
        )
        return 2
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    generated = dict(chart_files(kubectl))
    folder = CHART / "templates"
    present = {f"templates/{p.name}": p.read_text() for p in folder.glob("*.yaml")}
    if args.check:
        if generated != present:
            differ = {n for n in generated if present.get(n) != generated[n]}
            changed = sorted(set(generated) ^ set(present) | differ)
            print("deploy/helm/ws-counter is stale: python -m ws_counter.tools.helmchart", *changed,
                  sep="\n  ", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    for stale in set(present) - set(generated):
        (CHART / stale).unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in generated.items():
        (CHART / name).write_text(text)
    print(f"wrote {len(generated)} templates into {CHART.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
