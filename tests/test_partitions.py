"""Network faults between hosts of their own (faults/, docs/guarantees.md "Network faults"):
every run's history passes the checker: nothing acknowledged lost, nothing applied twice,
no seq acknowledged twice, no client's total going back, every client at the final state.

The short subset CI runs (about three minutes); ``python -m faults`` runs them all. The
figures of each run (longest stretch without an ack, convergence) are printed, not
asserted: they are measurements, kept in docs/guarantees.md. Needs root (namespaces,
iptables); WS_REQUIRE_PARTITIONS=1 (set by CI) makes its absence an error, not a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from faults.report import print_run
from faults.scenarios import SCENARIOS, Scenario, run

from .conftest import ARTIFACTS

pytestmark = pytest.mark.partition

# The shipped Sentinel and Redis Cluster configurations, as the manifests hold them
# (faults/shipped.py), and one Redis.
CI_SHIPPED = ("shipped-sentinel-partition-primary", "shipped-cluster-restart-replica")
CI_SCENARIOS = [
    *(s for s in SCENARIOS if s.name in CI_SHIPPED),
    Scenario("ci-single-slow-lossy-primary", "single", "slow-lossy-primary", hold=6.0),
]


def require_lab() -> None:
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    reason = "needs root" if os.geteuid() != 0 else f"needs {', '.join(missing)}" if missing else ""
    if not reason:
        return
    if os.environ.get("WS_REQUIRE_PARTITIONS") == "1":
        pytest.fail(f"the partition tests are required but the lab {reason}")
    pytest.skip(f"the partition lab {reason} (network namespaces and iptables)")


@pytest.mark.parametrize("scenario", CI_SCENARIOS, ids=[s.name for s in CI_SCENARIOS])
def test_every_guarantee_holds_through_the_fault(scenario: Scenario, tmp_path: Path) -> None:
    """A run with this nemesis passes every rule of the checker."""
    require_lab()
    result = run(scenario, tmp_path / scenario.name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print_run(result, ARTIFACTS / f"{scenario.name}.png")
    assert result.verdict.valid, result.verdict.errors
    assert result.verdict.acked > 0
