"""The lock (requirements/*.txt) agrees with pyproject.toml, and every install uses it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)(?: ; (.+?))? \\$", re.MULTILINE)


def pins(name: str) -> dict[str, list[tuple[Version, str | None]]]:
    """Each package of a lock file with its pinned versions (one per marker)."""
    found: dict[str, list[tuple[Version, str | None]]] = {}
    for package, version, marker in PIN.findall((LOCKS / name).read_text()):
        found.setdefault(canonicalize_name(package), []).append((Version(version), marker or None))
    return found


def project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def direct_requirements(*extras: str) -> list[Requirement]:
    table = project()
    wanted = [Requirement(line) for line in table["dependencies"]]  # type: ignore[attr-defined]
    for extra in extras:
        for line in table["optional-dependencies"][extra]:  # type: ignore[index]
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == "ws-counter":
                wanted += direct_requirements(*requirement.extras)
            else:
                wanted.append(requirement)
    return wanted


@pytest.mark.parametrize(("lock", "extras"), [("run.txt", ()), ("test.txt", ("test",))])
def test_the_lock_pins_every_requirement_within_its_range(lock: str, extras: tuple[str]) -> None:
    """Every requirement pyproject.toml names for that install is pinned by the lock to
    a version its range admits (so a changed range without `dev.sh lock` fails here)."""
    locked = pins(lock)
    environment = {key: str(value) for key, value in default_environment().items()}
    environment.update(python_full_version="3.11.7", extra="")
    for requirement in direct_requirements(*extras):
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements/{lock}: run dev.sh lock"
        for version, _ in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements/{lock} pins {requirement.name}=={version} outside"
                f" {requirement.specifier}: run dev.sh lock"
            )


@pytest.mark.parametrize("lock", ["run.txt", "test.txt", "checkov.txt", "build.txt"])
def test_every_pin_carries_hashes(lock: str) -> None:
    """pip's hash-checking mode needs a hash on every pin."""
    text = (LOCKS / lock).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert len(blocks) > 5
    for block in blocks:
        if block.strip() and not block.startswith("#"):
            assert "--hash=sha256:" in block, block.splitlines()[0]


@pytest.mark.parametrize("lock", ["run.txt", "build.txt"])
def test_the_run_and_build_locks_are_the_test_locks_versions(lock: str) -> None:
    """The demo and the image run the very versions the suite tested, and the image
    compiles with the mypy that CI type-checks and compiles with."""
    tested = pins("test.txt")
    for name, versions in pins(lock).items():
        assert {v for v, _ in versions} <= {v for v, _ in tested[name]}, name


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("Dockerfile", "--require-hashes --no-deps -r requirements/run.txt"),
        ("Dockerfile", "-r requirements/run.txt -r requirements/build.txt"),
        ("scripts/dev.sh", '--require-hashes --no-deps "${args[@]}"'),
        ("scripts/dev.sh", 'install_locked "$VENV" "requirements/$what.txt"'),
        ("scripts/dev.sh", 'install_locked "$venv" requirements/checkov.txt'),
        ("tests/test_install.py", '"--require-hashes", "--no-deps", "-r", str(lock)'),
    ],
)
def test_every_install_takes_the_lock(path: str, needle: str) -> None:
    """The image, the demo's and the suite's virtualenvs and the wheel test install
    the lock's hashes, never a fresh resolution."""
    assert needle in (ROOT / path).read_text()
