"""The soak's short run: every Redis mode through idle and load (faults/soak.py).

`python -m faults soak --minutes 60` is the long one; this is the 3-minute one CI runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.soak import MODES, Phases, soak

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_the_phases_give_the_first_idle_at_least_30_seconds() -> None:
    assert Phases.within(60) == Phases(30.0, 7.5, 7.5)
    assert Phases.within(1200) == Phases(600.0, 150.0, 150.0)
    assert Phases.within(10).first_idle == 30.0


def test_every_mode_stays_ready_exact_and_flat_through_idle_and_load(tmp_path: Path) -> None:
    """Per mode: no readiness answer but 200, no error logged, every load exact; worker
    RSS and open files, and Redis' keys, their bytes and channels flat (under 5%) from the
    first idle to the last; connections to Redis within the pools' bound, and the scripts
    Redis caches within the worker's and the soak's on each node."""
    results = soak(3.0, tmp_path, list(MODES))
    for result in results:
        assert sum(result.readiness.values()) > 500, result
        assert result.not_ready == 0, (result.mode, result.readiness)
        assert result.errors == [], (result.mode, result.errors)
        assert result.loads_exact == [True, True, True], result.mode
        assert all(growth < 0.05 for growth in result.growth().values()), (
            result.mode,
            result.growth(),
            result.idles,
        )
        assert result.connections_bounded, (result.mode, result.idles)
        assert result.scripts_bounded, (result.mode, result.script_bound, result.idles)
        assert result.passed
